"""``--procedure=evaluate``: top-1 and per-class accuracy of any classifier on a split, or on
the user's own images (``--eval_data``, see :mod:`zskd_tf.data.eval_data`)."""
from __future__ import annotations

from zskd_tf import model_io, teacher_task
from zskd_tf.data import datasets
from zskd_tf.errors import UserError
from zskd_tf.evaluation import accuracy_report
from zskd_tf.procedures.common import eval_data_split, scored_split
from zskd_tf.runtime.run_dir import RunDir


def dataset_for(cfg, model_path: str | None = None) -> str:
    """--dataset when given, else the dataset the model (``model_path``, default
    ``--model_path``) was trained on, else the default."""
    if "dataset" in cfg.present:
        return cfg.dataset
    return model_io.read_info(model_path or cfg.model_path).get("dataset", cfg.dataset)


def _eval_data(cfg):
    """(classifier, images, labels, class names, what they are) of ``--eval_data``."""
    classifier, task = teacher_task.resolve(
        cfg.model_path, dataset=cfg.dataset if "dataset" in cfg.present else None,
        description=teacher_task.description_of(cfg), flag="--model_path")
    split = eval_data_split(cfg, task.class_names, task.spec)
    return classifier, split.x, split.y, task.class_names, cfg.eval_data


def _named_split(cfg):
    """(classifier, images, labels, class names, dataset name) of ``--dataset``'s split."""
    name = dataset_for(cfg)
    raw = datasets.load_dataset(name, cfg.data_dir)
    classifier = model_io.load_classifier(cfg.model_path, raw.image_shape)
    split = scored_split(cfg, raw, None)
    return classifier, split.x, split.y, raw.class_names, name


def run(cfg) -> dict:
    run_dir = RunDir(cfg.run_dir)
    run_dir.check(cfg)
    classifier, x, y, class_names, name = (_eval_data if cfg.eval_data else _named_split)(cfg)
    scores = classifier.probabilities(x)
    if scores.shape[-1] != len(class_names):
        raise UserError(f"{cfg.model_path} predicts {scores.shape[-1]} classes but {name} has "
                        f"{len(class_names)}: evaluate it on the dataset it was trained for")
    report = accuracy_report(scores, y, class_names)
    split = "eval_data" if cfg.eval_data else cfg.split
    result = {"accuracy": report["accuracy"], f"{split}_accuracy": report["accuracy"],
              "per_class_accuracy": report["per_class_accuracy"],
              "num_examples": report["num_examples"], "split": split, "dataset": name,
              "model_path": cfg.model_path}
    run_dir.claim(cfg)
    run_dir.write_result(result)
    print(f"{split} accuracy of {cfg.model_path} on {name}: {report['accuracy']:.4f} "
          f"({report['num_examples']} images)", flush=True)
    for cls, acc in report["per_class_accuracy"].items():
        print(f"  {cls:>16s}: {acc:.4f}")
    return result
