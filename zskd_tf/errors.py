"""Errors that the command line reports as one line with exit status 2."""


class UserError(ValueError):
    """A mistake in what the user asked for (flags, paths, data): not a bug in zskd_tf.

    The CLI prints ``error: <message>`` on one line and exits with status 2, without a
    traceback. The message says what is wrong and, where possible, what to do instead.
    """
