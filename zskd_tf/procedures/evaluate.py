"""``--procedure=evaluate``: top-1 and per-class accuracy of any classifier on a split, or on
the user's own images (``--eval_data``, see :mod:`zskd_tf.data.eval_data`)."""
from __future__ import annotations

from zskd_tf import model_io, teacher_task
from zskd_tf.data import datasets
from zskd_tf.data.eval_data import load_eval_data
from zskd_tf.errors import UserError
from zskd_tf.evaluation import accuracy_report
from zskd_tf.procedures.common import limit
from zskd_tf.runtime.run_dir import RunDir


def dataset_for(cfg, model_path: str | None = None) -> str:
    """--dataset when given, else the dataset the model (``model_path``, default
    ``--model_path``) was trained on, else the default."""
    if "dataset" in cfg.present:
        return cfg.dataset
    return model_io.read_info(model_path or cfg.model_path).get("dataset", cfg.dataset)


def _split(cfg, raw):
    """The images and labels of ``--split`` (holdout: the first ``--holdout_first`` of train)."""
    if cfg.split == "test":
        return raw.test_x, raw.test_y
    if cfg.split == "train":
        return raw.train_x, raw.train_y
    if not 0 < cfg.holdout_first < len(raw.train_x):
        raise UserError(f"--split=holdout evaluates on the first --holdout_first training images: "
                        f"give --holdout_first between 1 and {len(raw.train_x) - 1} (the value "
                        f"the teacher was trained with)")
    return raw.train_x[:cfg.holdout_first], raw.train_y[:cfg.holdout_first]


def _eval_data(cfg):
    """(classifier, images, labels, class names, what they are) of ``--eval_data``."""
    if "split" in cfg.present:
        raise UserError("--split chooses a named dataset's split; --eval_data gives the images")
    classifier, task = teacher_task.resolve(
        cfg.model_path, dataset=cfg.dataset if "dataset" in cfg.present else None,
        description=teacher_task.description_of(cfg), flag="--model_path")
    x, y = load_eval_data(cfg.eval_data, task.class_names, task.spec.raw_shape)
    return classifier, x, y, task.class_names, cfg.eval_data


def _named_split(cfg):
    """(classifier, images, labels, class names, dataset name) of ``--dataset``'s split."""
    name = dataset_for(cfg)
    raw = datasets.load_dataset(name, cfg.data_dir)
    classifier = model_io.load_classifier(cfg.model_path, raw.image_shape)
    x, y = _split(cfg, raw)
    return classifier, x, y, raw.class_names, name


def run(cfg) -> dict:
    run_dir = RunDir(cfg.run_dir)
    run_dir.check(cfg)
    classifier, x, y, class_names, name = (_eval_data if cfg.eval_data else _named_split)(cfg)
    x, y = limit(x, y, cfg.max_test_examples, cfg.seed)
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
