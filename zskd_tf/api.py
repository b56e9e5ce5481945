"""The procedures as Python functions, for Keras users.

Each function runs exactly the code of its ``--procedure`` (no second implementation): the
keyword options are the command line's flags without ``--`` (``epochs=5`` is ``--epochs=5``),
checked and defaulted the same way, and the run directory is the same. Pass ``run_dir`` to
keep the products and to resume: calling the function again with the same arguments resumes
an interrupted run, or returns a finished one at once, exactly as the command line does.
Without ``run_dir`` the run goes to a new temporary directory.

Teachers and models can be paths (a zskd_tf run directory, a ``.keras`` file, a SavedModel) or
``keras.Model`` objects. A model object is saved once as ``<fingerprint>.keras`` under
``$ZSKD_TF_CACHE`` (default ``~/.cache/zskd_tf/models``), where the fingerprint hashes its
architecture and weights: the same model gives the same file, so a rerun resumes, and a model
changed since is a different input, which the run directory refuses as a different command.

Example (the teacher is any Keras classifier of 28x28x1 images in [0, 1], 10 classes)::

    import zskd_tf
    impressions = zskd_tf.data_impressions(teacher, num_samples=2000, synthesis_steps=100,
                                           dataset="fashion_mnist", run_dir="runs/di")
    student = zskd_tf.distill(teacher, "lenet5_half", impressions, epochs=20,
                              loss="soft_ce", temperature=20, soft_ce_scale=400,
                              targets="stored", run_dir="runs/student")
    student.predict(impressions.x[:8])

Errors in what is asked (an unknown option, a bad value, a teacher that does not fit) raise
:class:`zskd_tf.errors.UserError` with the same message the command line prints.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
import types
import warnings

from absl import flags

from zskd_tf import cli_flags
from zskd_tf.constants import STUDENT_INITS
from zskd_tf.errors import UserError
from zskd_tf.zskt.config import seed_dir_name

CACHE_ENV = "ZSKD_TF_CACHE"
_MODEL_OPTIONS = ("teacher", "model_path", "init_from", "student_run", "student")


def run(procedure: str, run_dir: str | os.PathLike | None = None, **options) -> dict:
    """Runs ``--procedure=procedure`` with ``options`` as its flags.

    Args:
        procedure: a procedure name, as ``--procedure`` (e.g. ``"data_impressions"``).
        run_dir: the run directory; a new temporary one when None.
        **options: flags without ``--``; ``teacher``, ``model_path``, ``init_from``,
            ``student_run`` and ``student`` (an untrained architecture) also take
            ``keras.Model`` objects, e.g. ``run("pipeline", teacher=model, quick=True)``.

    Returns:
        The procedure's result (``result.json``), with ``run_dir`` added.
    """
    from zskd_tf import procedures

    cfg = config(procedure, run_dir, **options)
    result = dict(procedures.run(cfg))
    result["run_dir"] = cfg.run_dir
    return result


def config(procedure: str, run_dir=None, **options) -> types.SimpleNamespace:
    """The validated configuration the command line would build from these flags.

    The options are parsed by the flags' own parsers and checked by ``cli_flags.validate``,
    the command line's code: the generic checks, then the procedure's typed config
    (``TrainConfig``, ``DistillConfig``, ... named in ``procedures/registry.py``). So a bad
    option raises the UserError the command line prints, before anything is written.

    Args:
        procedure: a procedure name, as ``--procedure``.
        run_dir: the run directory; None makes a new temporary one (once the options are
            valid).
        **options: flags without ``--``.

    Returns:
        Every flag's value as an attribute (the defaults for those not given), with
        ``present`` (the names given) and ``flag_schema``, as ``cli_flags.config_from_flags``.
    """
    known = set(cli_flags.our_flag_names())
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)}: the options are the command "
                        "line's flags without '--' (python -m zskd_tf.main --helpfull)")
    if procedure not in cli_flags.PROCEDURE_NAMES:
        raise UserError(f"unknown procedure {procedure!r}; use one of "
                        f"{', '.join(cli_flags.PROCEDURE_NAMES)}")
    values = {name: flags.FLAGS[name].default for name in known}
    for name, value in options.items():
        values[name] = _parsed(name, _model_path(value) if name in _MODEL_OPTIONS else value)
    temporary = run_dir is None  # made below, once the options are valid
    values.update(procedure=procedure, run_dir=os.path.abspath(
        tempfile.gettempdir() if temporary else os.fspath(run_dir)))
    cfg = types.SimpleNamespace(**values)
    cfg.present = set(options) | {"procedure", "run_dir"}
    cfg.flag_schema = cli_flags.flag_schema()
    cli_flags.validate(cfg)
    ignored = cli_flags.unread(procedure, options)
    if ignored:
        warnings.warn(cli_flags.unread_warning(procedure, ignored, dashes=""), UserWarning,
                      stacklevel=_first_caller_outside_the_package())
    if temporary:
        cfg.run_dir = tempfile.mkdtemp(prefix=f"zskd_tf_{procedure}_")
    return cfg


def _first_caller_outside_the_package() -> int:
    """``warnings.warn``'s stacklevel, called from here, of the user's line that called in."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = inspect.currentframe().f_back, 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def train(model: str, dataset: str = "fashion_mnist", *, run_dir=None, **options):
    """Trains a zoo architecture on a named dataset with its paper's recipe.

    Args:
        model: an architecture name (``lenet5``, ``wrn-16-2``, ...).
        dataset: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100`` or ``svhn``.
        run_dir: see :func:`run`.
        **options: flags of ``--procedure=train`` (``epochs``, ``batch_size``, ...).

    Returns:
        The trained ``keras.Model`` (float32 logits).
    """
    result = run("train", run_dir, model=model, dataset=dataset, **options)
    return _load_model(result["run_dir"])


def data_impressions(teacher, num_samples: int | None = None, *, run_dir=None, **options):
    """ZSKD data impressions synthesised from ``teacher`` alone.

    Args:
        teacher: a ``keras.Model`` or a path (run directory, ``.keras``, SavedModel).
        num_samples: impressions to make (default: the paper's count for the dataset).
        run_dir: see :func:`run`.
        **options: flags of ``--procedure=data_impressions`` (``synthesis_steps``,
            ``synthesis_lr``, ``betas``, ``dataset`` for a teacher without
            ``model_info.json``, or ``class_names``/``num_classes``/``input_range`` to
            describe such a teacher by itself, ...).

    Returns:
        A :class:`zskd_tf.data.synthetic.SyntheticDataset`: arrays ``x``, ``y``,
        ``soft_targets``, its ``path`` and ``to_tf_dataset()``.
    """
    if num_samples is not None:
        options["num_samples"] = num_samples
    result = run("data_impressions", run_dir, teacher=teacher, **options)
    from zskd_tf.data import synthetic
    return synthetic.load_synthetic(os.path.join(result["run_dir"], "impressions.npz"))


def distill(teacher, student: str, data, *, run_dir=None, **options):
    """Trains ``student`` from the frozen ``teacher`` on ``data`` (KD, attention transfer).

    Args:
        teacher: a ``keras.Model`` or a path; None for the no-teacher baseline.
        student: an architecture name (``lenet5_half``, ``wrn-16-1``, ``small_cnn``, ...), or
            an untrained ``keras.Model`` (or ``.keras`` file) taking the teacher's inputs.
        data: a dataset name, a synthetic ``.npz`` path, or a ``SyntheticDataset`` returned
            by :func:`data_impressions` (or loaded with ``load_synthetic``).
        run_dir: see :func:`run`.
        **options: flags of ``--procedure=distill`` (``loss``, ``alpha``, ``temperature``,
            ``beta``, ``epochs``, ``augment``, ``targets``, ...).

    Returns:
        The trained student, a ``keras.Model``.
    """
    path = getattr(data, "path", None) or os.fspath(data)
    if teacher is not None:
        options["teacher"] = teacher
    result = run("distill", run_dir, student=student, dataset=path, **options)
    return _load_model(result["run_dir"])


def zero_shot(teacher, student: str, *, run_dir=None, **options):
    """ZSKT: ``student`` taught through a generator trained against it, with no data.

    Args:
        teacher: a ``keras.Model`` or a path (a SavedModel cannot be differentiated through).
        student: an architecture name, or an untrained ``keras.Model`` (or ``.keras`` file)
            taking the teacher's inputs.
        run_dir: see :func:`run`.
        **options: flags of ``--procedure=zero_shot`` (``iterations``, ``beta``,
            ``generator_bn_weight``, ``seeds``, ``dataset`` for the test set, ...).

    Returns:
        The trained student (``keras.Model``); a list of them, one per seed, when ``seeds``
        names more than one.
    """
    result = run("zero_shot", run_dir, teacher=teacher, student=student, **options)
    students = [_load_model(os.path.join(result["run_dir"], seed_dir_name(s)))
                for s in result["seeds"]]
    return students[0] if len(students) == 1 else students


def evaluate(model, dataset: str | None = None, split: str | None = None, *, run_dir=None,
             **options) -> dict:
    """Top-1 and per-class accuracy of ``model`` on a named dataset's split, or on
    ``eval_data=`` (your own labelled images).

    Args:
        model: a ``keras.Model`` or a path.
        dataset: the dataset (default: the one the model was trained on, else fashion_mnist).
        split: ``test`` (default), ``train`` or ``holdout`` (the first ``holdout_first`` train
            images); not with ``eval_data``.
        run_dir: see :func:`run`.

    Returns:
        The result: ``accuracy``, ``per_class_accuracy``, ``num_examples``, ...
    """
    if dataset is not None:
        options["dataset"] = dataset
    if split is not None:
        options["split"] = split
    return run("evaluate", run_dir, model_path=model, **options)


def export_model(model, *, run_dir=None, **options) -> dict:
    """SavedModel, TFLite and quantized TFLite exports of ``model``.

    Args:
        model: a ``keras.Model`` or a path (run directory, ``.keras``).
        run_dir: see :func:`run`.
        **options: flags of ``--procedure=export``: ``tflite=True``; ``quantize="int8"`` with
            ``calibration`` (a synthetic ``.npz`` path or ``SyntheticDataset``, ``"generator"``,
            ``"real"``, ``"noise"``), ``quantize_io``, ``calibration_samples``,
            ``generator_run``; or ``quantize="dynamic"`` (docs/int8_quantization.md).

    Returns:
        The result: paths (``saved_model``, ``tflite``, ``tflite_int8``, ...) and the
        ``quantization`` summary (calibration source, size, input quantization).
    """
    if "calibration" in options:
        options["calibration"] = getattr(options["calibration"], "path", None) or os.fspath(
            options["calibration"])
    return run("export", run_dir, model_path=model, **options)


def quantize_model(teacher, *, run_dir=None, **options) -> dict:
    """Data-free full-integer TFLite of ``teacher``, calibrated on its own data impressions
    (with the BatchNorm-statistics prior when it has BatchNormalization).

    Args:
        teacher: a ``keras.Model`` or a path (run directory, ``.keras``).
        run_dir: see :func:`run`.
        **options: flags of ``--procedure=quantize`` (``calibration_samples``,
            ``synthesis_steps``, ``synthesis_lr``, ``quantize_io``, ``tflite``, ``dataset``
            for a model without ``model_info.json``, ...).

    Returns:
        The result; ``tflite_int8`` is the int8 model's path.
    """
    return run("quantize", run_dir, teacher=teacher, **options)


def narrower_student(teacher, factor: float = 0.5, *, init: str = "teacher", seed: int = 0):
    """A student for ``teacher``: its own layers at ``factor`` of their widths, the class
    scores kept (what ``--procedure=pipeline --student=auto`` makes of a Keras teacher).

    Args:
        teacher: a ``keras.Model`` or a ``.keras`` file / zskd_tf run directory.
        factor: the share of filters or units each convolution and dense layer keeps.
        init: ``"teacher"``: the teacher's weights of its most important channels (data-free
            pruning; residual ``Add`` merges are fine, a teacher that concatenates branches or
            reshapes cannot be sliced and raises UserError); ``"random"``: fresh weights drawn
            with ``seed``.
        seed: the seed of the fresh weights.

    Returns:
        An uncompiled ``keras.Model`` that outputs logits, to pass to :func:`distill` as the
        student (fine-tune it with ``lr_schedule="cosine"`` when it starts from the teacher).
    """
    from zskd_tf import model_io
    from zskd_tf.models import narrower, teacher_channels

    if init not in STUDENT_INITS:
        raise UserError(f"init must be one of {', '.join(map(repr, STUDENT_INITS))}, "
                        f"got {init!r}")
    model = teacher if not isinstance(teacher, (str, os.PathLike)) else \
        model_io.load_keras_model(os.fspath(teacher))
    copy = narrower.narrower_copy(model, factor, seed)
    return teacher_channels.take_teacher_channels(model, copy) if init == "teacher" else copy


def model_fingerprint(model) -> str:
    """A hex digest of a Keras model's architecture and weights (not of its optimizer)."""
    from zskd_tf import model_io

    digest = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True,
                                       default=str).encode())
    digest.update(model_io.weights_sha256(model).encode())  # the config fixes the shapes
    return digest.hexdigest()[:20]


def _model_path(value):
    """A path for a model option: paths as given, ``keras.Model`` objects saved once."""
    import keras

    if not isinstance(value, keras.Model):
        return os.fspath(value) if value is not None else None
    directory = os.path.expanduser(os.environ.get(CACHE_ENV) or "~/.cache/zskd_tf/models")
    path = os.path.join(directory, f"{model_fingerprint(value)}.keras")
    if not os.path.exists(path):
        from zskd_tf.runtime import atomic
        os.makedirs(directory, exist_ok=True)
        with atomic.atomic_path(path, ".keras") as tmp:
            value.save(tmp)
    return path


def _parsed(name: str, value):
    """``value`` checked and converted by the flag's own parser, as the command line does."""
    if value is None:
        return None
    try:
        return flags.FLAGS[name].parser.parse(value)
    except (ValueError, TypeError) as e:
        raise UserError(f"option {name}={value!r}: {e}") from None


def _load_model(run_dir: str):
    import keras

    return keras.saving.load_model(os.path.join(run_dir, "model.keras"), compile=False)
