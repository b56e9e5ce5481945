"""``--procedure=distill``: trains a student from a frozen teacher.

Data: a named dataset (all of it, ``--max_train_examples``, or ``--samples_per_class=M``
few-shot), or a synthetic ``.npz`` made by a data-free procedure (also of a teacher described by
itself, dataset ``custom``: see :mod:`zskd_tf.teacher_task`). The student is an architecture
name or a ``.keras`` file holding an untrained model; it always takes the teacher's inputs
(same resize and normalisation), so its export serves raw images like the teacher's.
``--alpha=0 --beta=0`` needs no teacher: the no-teacher baseline. ``--eval_data`` replaces
the real test set the student is scored on; ``--split=holdout --holdout_first=N`` scores it on
the first N training images instead (a validation split: real-data students never train on
them).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from zskd_tf import model_io, teacher_task
from zskd_tf.constants import MIXING_AUGMENTATIONS
from zskd_tf.data import batch_streams, datasets, sampling, synthetic
from zskd_tf.data import preprocess as pp
from zskd_tf.errors import UserError
from zskd_tf.models import complexity, narrower, registry, teacher_channels
from zskd_tf.models import taps as taps_lib
from zskd_tf.procedures.common import (
    Split,
    eval_data_split,
    finished_result,
    limit,
    model_info,
    no_real_images,
    scored_split,
    start_student,
    train_and_export,
    with_config_defaults,
)
from zskd_tf.runtime import atomic, devices, memory
from zskd_tf.runtime.run_dir import RunDir
from zskd_tf.trainers import recipes
from zskd_tf.trainers.distill_config import DistillConfig
from zskd_tf.trainers.distiller import Distiller

# Flags left at None that the procedure fills in from its config; flags.cfg records them so.
RECORDED_DEFAULTS = ("temperature", "beta")


@dataclasses.dataclass
class DistillData:
    train: Split
    test: Split | None
    spec: pp.InputSpec            # the teacher's (and so the student's) input mapping
    dataset: str                  # the real dataset's name
    class_names: list
    source: str
    full_train_size: int          # for few-shot iteration matching
    sample_indices: np.ndarray | None = None


def _targets(cfg) -> str:
    if cfg.targets != "auto":
        return cfg.targets
    return "teacher" if cfg.teacher else "stored"


def _teacher_scores_everything(cfg) -> bool:
    """No term of the loss reads a label or a stored target: the teacher scores each view."""
    if cfg.loss == "soft_ce":
        return _targets(cfg) == "teacher"
    return cfg.alpha == 1 and bool(cfg.teacher)


def _check_views_are_scored(cfg, config) -> None:
    """Views that only the teacher can label need a loss where the teacher scores every view."""
    if _teacher_scores_everything(cfg):
        return
    if config.augment in MIXING_AUGMENTATIONS:
        why = f"--augment={config.augment} blends two images into one whose class"
    elif config.disagreement_eps:
        why = ("--disagreement_eps moves images to where the student and the teacher "
               "disagree, into ones whose class")
    else:
        return
    raise UserError(f"{why} no label or stored target gives: use it with --loss=soft_ce "
                    "--targets=teacher (or --loss=kd --alpha=1), where the teacher scores "
                    "every view")


def _needs_teacher(cfg) -> bool:
    if cfg.loss == "soft_ce":
        return _targets(cfg) == "teacher"
    return cfg.alpha > 0 or cfg.beta > 0


def _load_teacher(cfg):
    if not cfg.teacher:
        if _needs_teacher(cfg):
            raise UserError("--teacher is required (or --alpha=0 --beta=0 for the no-teacher "
                            "baseline, or --loss=soft_ce --targets=stored on a synthetic set)")
        return None
    loaded, _ = teacher_task.resolve(cfg.teacher, dataset=_teacher_dataset(cfg),
                                     description=teacher_task.description_of(cfg),
                                     raw_shape=_raw_shape(cfg), differentiable=True)
    return loaded


def _teacher_dataset(cfg) -> str | None:
    """The named dataset a foreign teacher classifies: --dataset's, or the synthetic set's
    (None: a teacher described by itself)."""
    if not synthetic.is_synthetic_path(cfg.dataset):
        return cfg.dataset
    dataset = (synthetic.read_meta(cfg.dataset) or {}).get("dataset")
    return dataset if dataset in datasets.DATASET_NAMES else None


def _raw_shape(cfg):
    """The raw image shape of --dataset, for a teacher without model_info.json: a named
    dataset's, or the raw size a synthetic set's input mapping starts from."""
    if not synthetic.is_synthetic_path(cfg.dataset):
        return datasets.IMAGE_SHAPES.get(cfg.dataset)
    spec = synthetic.read_input_spec(cfg.dataset)
    return None if spec is None else (spec.raw_height, spec.raw_width, spec.channels)


def _student_name(cfg) -> str:
    name = cfg.student or model_io.read_info(cfg.init_from or "").get("model")
    if not name:
        raise UserError("--student is required (an architecture name, e.g. lenet5_half)")
    return name


def _synthetic_data(cfg, teacher) -> DistillData:
    syn = synthetic.load_synthetic(cfg.dataset)
    y = syn.y
    if cfg.loss == "soft_ce" and _targets(cfg) == "stored":
        if syn.soft_targets is None:
            raise UserError(f"{cfg.dataset} has no soft_targets: use --targets=teacher")
        y = syn.soft_targets
    if teacher is not None and tuple(teacher.spec.shape) != tuple(syn.x.shape[1:]):
        raise UserError(f"{cfg.dataset} holds {tuple(syn.x.shape[1:])} inputs but the teacher "
                        f"takes {tuple(teacher.spec.shape)}: was it made from another teacher?")
    if teacher is not None:
        _check_provenance(cfg, syn, teacher)
    test, class_names, full = None, list(syn.class_names), len(syn.x)
    if cfg.eval_data:
        test = eval_data_split(cfg, class_names, syn.input_spec)
    elif syn.dataset == datasets.CUSTOM:
        no_real_images(cfg, f"{cfg.dataset} is of a teacher described by itself")
    else:
        try:
            raw = datasets.load_dataset(syn.dataset, cfg.data_dir)
            test = scored_split(cfg, raw, syn.input_spec)
            class_names = list(raw.class_names)
        except UserError as e:
            if cfg.split != "test":  # a validation split asked for and not there
                raise
            print(f"warning: no real test set to evaluate on ({e})", flush=True)
    x, y = limit(syn.x, y, cfg.max_train_examples, cfg.seed)
    return DistillData(Split(x, y, None), test, syn.input_spec, syn.dataset, class_names,
                       cfg.dataset, full)


def _check_provenance(cfg, syn, teacher) -> None:
    """A synthetic set made from another teacher, input mapping or dataset than --teacher is
    refused unless --allow_foreign_synthetic; a set that records no teacher gets a warning."""
    made_by = syn.meta.get("teacher")
    current = model_io.fingerprint(teacher)
    problems = []
    if made_by and made_by.get("weights_sha256") != current["weights_sha256"]:
        problems.append(f"was made from another teacher (a {made_by.get('model')} whose weights "
                        f"differ from --teacher={cfg.teacher}'s)")
    if syn.input_spec != teacher.spec:
        problems.append("was made for another input mapping (resize/normalisation) than "
                        "the teacher's")
    trained_on = teacher.info.get("dataset")
    if trained_on and trained_on != syn.dataset:
        problems.append(f"names the dataset {syn.dataset}, but the teacher classifies {trained_on}")
    if problems and not cfg.allow_foreign_synthetic:
        raise UserError(f"{cfg.dataset} {'; and '.join(problems)}: give the teacher it was made "
                        "from, or --allow_foreign_synthetic to distil on it anyway")
    for problem in problems:
        print(f"warning: {cfg.dataset} {problem} (--allow_foreign_synthetic)", flush=True)
    if not made_by:
        print(f"warning: {cfg.dataset} records no teacher (made before zskd_tf recorded it); "
              f"it cannot be checked against --teacher={cfg.teacher}", flush=True)


def _real_data(cfg, teacher) -> DistillData:
    raw = datasets.load_dataset(cfg.dataset, cfg.data_dir)
    if teacher is not None:
        spec = teacher.spec
    else:
        student = _student_name(cfg)
        spec = pp.input_spec_for(cfg.dataset, registry.model_family(student),
                                 registry.default_input_shape(student, raw.image_shape[-1]))
    x, y = raw.train_x[cfg.holdout_first:], raw.train_y[cfg.holdout_first:]
    indices = None
    if cfg.samples_per_class:
        indices = sampling.sample_per_class(y, cfg.samples_per_class, cfg.seed)
        x, y = x[indices], y[indices]
        indices = indices + cfg.holdout_first  # true dataset indices
    train = Split(*limit(x, y, cfg.max_train_examples, cfg.seed), spec)
    test = (eval_data_split(cfg, raw.class_names, spec) if cfg.eval_data else
            scored_split(cfg, raw, spec))
    return DistillData(train, test, spec, cfg.dataset, list(raw.class_names), raw.source,
                       len(raw.train_x), indices)


def _with_taps(config: DistillConfig, teacher_model, student) -> DistillConfig:
    """``config`` with the taps attention transfer uses: ``--at_taps``, else every spatial tap
    teacher and student share; none when ``--beta`` is 0. The same for the channel hints:
    ``--hint_taps``, else the student's last tap; none when ``--hint_weight`` is 0."""
    at_taps = ()
    if config.beta:
        at_taps = config.at_taps or taps_lib.common_spatial_taps(teacher_model, student)
        if not at_taps:
            raise UserError("--beta > 0 needs feature taps of the same spatial size in teacher "
                            "and student (e.g. two WRNs); none found: use --beta=0")
    hint_taps = ()
    if config.hint_weight:
        hint_taps = config.hint_taps or tuple(taps_lib.tap_names(student)[-1:])
        if not hint_taps:  # a copy of a foreign classifier: no taps
            try:
                hint_taps = (narrower.last_hidden_layer(student),)
            except UserError as e:
                raise UserError(f"--hint_weight > 0: {e}; there is nothing to hint") from None
    return dataclasses.replace(config, at_taps=tuple(at_taps), hint_taps=tuple(hint_taps))


def _hint_channels(config: DistillConfig, teacher_model, student) -> dict:
    """{hint tap: the teacher's channels the student's stand for (None: all)}, checked: the
    student must be a narrower copy of the teacher and each tap's features must line up."""
    if not config.hint_weight:
        return {}
    if teacher_model is None:
        raise UserError("--hint_weight > 0 needs a teacher whose layers can be read: a zskd_tf "
                        "run or a .keras file")
    try:
        kept = teacher_channels.kept_channels(teacher_model, student)
    except UserError as e:
        raise UserError(f"--hint_weight > 0 needs a student that is a narrower copy of the "
                        f"teacher, layer for layer (e.g. lenet5 -> lenet5_half): {e}") from None
    channels = {}
    for name in config.hint_taps:
        teacher_layer = taps_lib.tap_layer(teacher_model, name)  # unknown names: a clear error
        layer = teacher_layer.name
        t_shape = list(teacher_layer.output.shape[1:])
        if kept.get(layer) is not None:
            t_shape[-1] = len(kept[layer])
        s_shape = list(taps_lib.tap_layer(student, name).output.shape[1:])
        if t_shape != s_shape:
            raise UserError(f"hint tap {name}: the student's features {tuple(s_shape)} do not "
                            f"line up with the teacher's channels they stand for "
                            f"{tuple(t_shape)}")
        channels[name] = kept.get(layer)
    return channels


def _few_shot_epochs(epochs: int, n_full: int, num_classes: int, m: int, dataset: str) -> int:
    """Iteration matching (docs/methods/kd_at_moonshine.md, "Few-shot KD+AT and the no-teacher
    baseline"): epochs x N_train / (K*M); SVHN scales M < 100 by M/100."""
    scale = n_full / (num_classes * m)
    if dataset == "svhn" and m < 100:
        scale *= m / 100
    return max(1, int(epochs * scale))


def _build_student(cfg, name, spec, num_classes, teacher_model):
    model = registry.build_student(name, num_classes=num_classes, input_shape=spec.shape,
                                   conv=cfg.conv, block=cfg.block)
    start_student(model, cfg, teacher_model, name)
    return model


def run(cfg) -> dict:
    config = DistillConfig.from_flags(cfg)  # every distillation flag, defaulted and checked
    _check_views_are_scored(cfg, config)
    cfg = with_config_defaults(cfg, config, RECORDED_DEFAULTS)
    run_dir = RunDir(cfg.run_dir)
    finished = finished_result(run_dir, cfg)
    if finished:
        return finished
    strategy = devices.make_strategy(cfg.strategy)
    with strategy.scope():  # the teacher's variables must live where the replicas run
        teacher = _load_teacher(cfg)
    data = (_synthetic_data if synthetic.is_synthetic_path(cfg.dataset)
            else _real_data)(cfg, teacher)
    num_classes = len(data.class_names)
    if teacher is not None:
        model_io.check_class_count(teacher, cfg.teacher, num_classes, data.dataset)
    name = _student_name(cfg)
    recipe = recipes.resolve(config, name, data.dataset)
    if config.samples_per_class and "epochs" not in cfg.present:
        recipe = dataclasses.replace(recipe, epochs=_few_shot_epochs(
            recipe.epochs, data.full_train_size, num_classes, config.samples_per_class,
            data.dataset))
    if config.augment != "auto":
        augment = config.augment
    elif data.train.spec is None:  # synthetic inputs: the papers distil without augmentation
        augment = "none"
    elif registry.is_model_file(name):
        augment = "none"
    else:
        augment = pp.default_augmentation(data.dataset, registry.model_family(name))
    devices.check_global_batch(recipe.batch_size, strategy)
    steps_per_epoch = batch_streams.steps_per_epoch(len(data.train.x), recipe.batch_size)
    total_steps = steps_per_epoch * recipe.epochs
    teacher_model = teacher.model if teacher is not None else None
    t_params = complexity.count_trainable_params(teacher_model) if teacher_model else None
    with strategy.scope():
        student = _build_student(cfg, name, data.spec, num_classes, teacher_model)
        config = _with_taps(config, teacher_model, student)
        optimizer = recipes.make_optimizer(recipe, total_steps)
        trainer = Distiller(student, teacher_model, config, weight_decay=recipe.weight_decay,
                            ema_momentum=config.ema_momentum,
                            hint_channels=_hint_channels(config, teacher_model, student))
        trainer.compile(optimizer=optimizer)
        optimizer.build(student.trainable_variables)
    memory.check_batch_fits("batch_size", recipe.batch_size,
                            memory.activations_per_example(student, teacher_model))
    run_dir.claim(cfg)
    if data.sample_indices is not None:
        atomic.write_json(run_dir.file("samples.json"),
                          {"samples_per_class": cfg.samples_per_class, "seed": cfg.seed,
                           "indices": [int(i) for i in data.sample_indices]})
    result = {"student": name, "teacher": cfg.teacher, "dataset": data.dataset,
              "data_source": data.source,
              "distill": config.objective()}
    if teacher is not None:
        result.update(teacher_trainable_params=t_params,
                      compression_ratio=t_params / complexity.count_trainable_params(student))
        if data.test is not None:
            t_pred = teacher.probabilities(data.test.x).argmax(-1)
            result["teacher_test_accuracy"] = float(np.mean(t_pred == data.test.y))
    print(f"distilling {cfg.teacher or '(no teacher)'} -> {name} on {len(data.train.x)} "
          f"{'synthetic' if data.train.spec is None else data.dataset} images "
          f"({recipe.epochs} epochs x {steps_per_epoch} steps of {recipe.batch_size})",
          flush=True)
    return train_and_export(
        cfg, run_dir, trainer=trainer, model=student, optimizer=optimizer, recipe=recipe,
        train=data.train, test=data.test, augment=augment, total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        info=model_info(name, cfg, data.dataset, data.class_names, data.spec), result=result)
