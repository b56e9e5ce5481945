"""The task of a teacher: the dataset it classifies, its class names and its input mapping.

A zskd_tf model records its task in ``model_info.json``. A foreign model (a ``.keras`` file or
a SavedModel made elsewhere) is either taken to classify a named dataset (``--dataset``), or,
without ``--dataset``, is *described by itself*:

* its input shape (H, W, C) is the raw image size (images are not resized);
* its output count K is the number of classes (``--num_classes``, when given, must equal it);
* its class names are ``--class_names`` (default ``"0"`` .. ``"K-1"``);
* its input values span ``--input_range`` (default 0,1: raw pixels / 255).

Such a task is recorded under the dataset name :data:`~zskd_tf.data.datasets.CUSTOM` with its
class names and input spec, in ``model_info.json`` and in the meta of synthetic ``.npz`` files,
so that later steps (distill on the impressions, zero_shot, export, quantize) need no named
dataset.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from zskd_tf import model_io
from zskd_tf.data import datasets
from zskd_tf.data import preprocess as pp
from zskd_tf.errors import UserError


@dataclasses.dataclass(frozen=True)
class Description:
    """What the user says about a foreign teacher (None: not said)."""
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    input_range: tuple[float, float] | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in dataclasses.astuple(self))


@dataclasses.dataclass(frozen=True)
class Task:
    """The dataset name (a named one or ``custom``), class names and input mapping."""
    dataset: str
    class_names: tuple[str, ...]
    spec: pp.InputSpec | None  # None only for a zskd_tf export recording none

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_named(self) -> bool:
        return self.dataset in datasets.DATASET_NAMES

    def info(self) -> dict:
        """The task as model_info.json records it."""
        return {"dataset": self.dataset, "num_classes": self.num_classes,
                "class_names": list(self.class_names), "input_spec": self.spec.to_dict()}


def parse_input_range(values) -> tuple[float, float] | None:
    """``LOW,HIGH`` strings -> floats (None stays None: [0, 1])."""
    if values is None:
        return None
    try:
        low, high = (float(v) for v in values)
    except (TypeError, ValueError):
        raise UserError(f"--input_range must be two numbers LOW,HIGH, got {values!r}") from None
    if not low < high:
        raise UserError(f"--input_range needs LOW < HIGH, got {low},{high}")
    return low, high


def spec_with_range(spec: pp.InputSpec, low: float, high: float) -> pp.InputSpec:
    """``spec`` mapping raw [0, 255] to [low, high] instead of [0, 1]."""
    mean, std = -low / (high - low), 1.0 / (high - low)
    return dataclasses.replace(spec, mean=(mean,) * spec.channels, std=(std,) * spec.channels)


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """``"0"`` .. ``"K-1"``: the names of a teacher whose classes were not named."""
    return tuple(str(i) for i in range(num_classes))


def description_of(cfg) -> Description:
    """The description in a config's ``num_classes``, ``class_names`` and ``input_range``.

    Args:
        cfg: a config namespace (the command line's or the API's).

    Returns:
        The :class:`Description`, its values checked.
    """
    names = getattr(cfg, "class_names", None)
    if names is not None:
        names = tuple(str(n).strip() for n in names)
        if not names or any(not n for n in names):
            raise UserError(f"--class_names must be a comma list of non-empty names, got "
                            f"{','.join(names)!r}")
        if len(set(names)) != len(names):
            raise UserError(f"--class_names lists a name twice: {','.join(names)}")
    num_classes = getattr(cfg, "num_classes", None)
    if num_classes is not None and num_classes < 2:
        raise UserError(f"--num_classes must be at least 2, got {num_classes}")
    if num_classes is not None and names is not None and len(names) != num_classes:
        raise UserError(f"--class_names names {len(names)} classes but --num_classes is "
                        f"{num_classes}")
    return Description(num_classes, names, parse_input_range(getattr(cfg, "input_range", None)))


def class_names_for(outputs: int, description: Description, path: str) -> tuple[str, ...]:
    """The class names of a self-described teacher with ``outputs`` scores per image."""
    expected = description.num_classes
    if expected is None and description.class_names is not None:
        expected = len(description.class_names)
    if expected is not None and expected != outputs:
        raise UserError(f"--teacher={path} has {outputs} outputs but --num_classes/--class_names "
                        f"say {expected} classes: a classifier has one score per class")
    return description.class_names or default_class_names(outputs)


def resolve(path: str, *, dataset: str | None = None, description: Description = Description(),
            raw_shape=None, flag: str = "--teacher",
            differentiable: bool = False) -> tuple[model_io.LoadedClassifier, Task]:
    """Loads the classifier at ``path`` and states its task.

    Args:
        path: a run directory, ``.keras`` file or SavedModel.
        dataset: the named dataset a foreign model classifies (``--dataset`` when given);
            None describes a foreign model by itself (ignored for zskd_tf models).
        description: ``--num_classes``, ``--class_names``, ``--input_range``.
        raw_shape: raw image size of a foreign model's inputs, when the caller knows it (a
            synthetic set's); default: the dataset's, or the model's own input size.
        flag: the flag naming ``path``, for messages.
        differentiable: refuse models that cannot be differentiated (SavedModels).

    Returns:
        (the loaded classifier, with its input mapping; its :class:`Task`).
    """
    info = model_io.read_info(path)
    if "input_spec" in info:  # made by zskd_tf: the task is recorded
        if description.given:
            raise UserError(f"{flag}={path} records its classes and input mapping "
                            "(model_info.json): --num_classes, --class_names and --input_range "
                            "are for foreign models")
        loaded = _load(path, None, flag, differentiable)
        spec = pp.InputSpec.from_dict(info["input_spec"])
        return loaded, Task(info["dataset"], tuple(info["class_names"]), spec)
    if dataset is not None and dataset != datasets.CUSTOM:
        shape = raw_shape or datasets.IMAGE_SHAPES[datasets.check_dataset_name(dataset)]
    else:
        shape = raw_shape or model_io.NATIVE
    loaded = _load(path, shape, flag, differentiable)
    if loaded.spec is None:
        raise UserError(f"{flag}={path} is a zskd_tf export without its model_info: give the "
                        "run directory it came from")
    if description.input_range is not None:
        loaded.spec = spec_with_range(loaded.spec, *description.input_range)
    outputs = _output_count(loaded, f"{flag}={path}")
    if dataset is not None and dataset != datasets.CUSTOM:
        if loaded.spec.channels != shape[-1]:
            raise UserError(f"{flag}={path} takes {loaded.spec.channels}-channel images but "
                            f"{dataset} has {shape[-1]}: give --dataset it classifies")
        names = datasets.class_names(dataset)
        if description.num_classes or description.class_names:
            raise UserError(f"--dataset={dataset} fixes the classes: drop --num_classes and "
                            "--class_names (or --dataset, to describe the teacher by itself)")
    else:
        names = class_names_for(outputs, description, path)
    task = Task(dataset or datasets.CUSTOM, tuple(names), loaded.spec)
    loaded.info = {**task.info(), **loaded.info}
    return loaded, task


def _load(path, raw_shape, flag, differentiable) -> model_io.LoadedClassifier:
    try:
        if differentiable:
            return model_io.load_keras_classifier(path, flag, raw_shape)
        return model_io.load_classifier(path, raw_shape)
    except UserError:
        raise
    except (ValueError, TypeError) as e:  # e.g. a model whose input is not (N, H, W, C)
        raise UserError(f"{flag}={path} must take images (N, height, width, channels): "
                        f"{str(e).splitlines()[0][:120]}") from None


def _output_count(loaded: model_io.LoadedClassifier, named: str) -> int:
    if loaded.model is not None:
        shape = loaded.model.output_shape
    else:
        shape = loaded.probabilities(np.zeros((1, *loaded.spec.raw_shape), np.float32)).shape
    if len(shape) != 2 or shape[-1] is None or shape[-1] < 2:
        raise UserError(f"{named} outputs shape {tuple(shape)}; a classifier outputs one "
                        "vector of class scores per image (N, K) with K >= 2")
    return int(shape[-1])
