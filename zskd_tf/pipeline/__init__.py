"""``--procedure=pipeline``: the whole data-free story in one command.

* :mod:`steps` — the presets (quick, full) and the ordered steps, each a zskd_tf command;
* :mod:`report` — report.html / report.json and the figures of a finished pipeline.
"""
