"""Training recipes of the original papers, per model family; flags override any field."""
from __future__ import annotations

import dataclasses
import math

import keras

from zskd_tf.errors import UserError


@dataclasses.dataclass(frozen=True)
class Recipe:
    optimizer: str            # "sgd" or "adam"
    learning_rate: float
    batch_size: int
    epochs: int
    momentum: float = 0.0
    weight_decay: float = 0.0     # coupled L2: weight_decay * w is added to each gradient
    lr_schedule: str = "step"     # "step" (x lr_decay at lr_milestones), "cosine", "constant"
    lr_milestones: tuple = ()     # fractions of the run
    lr_decay: float = 1.0
    adam_epsilon: float = 1e-8    # TF1 / PyTorch default (Keras' own default is 1e-7)


# WRN (docs/methods/zskt.md, "Teacher recipe"; docs/methods/kd_at_moonshine.md, "Training
# recipe (teachers, scratch, KD and AT students alike)"): SGD 0.1, momentum 0.9, coupled weight
# decay 5e-4, x0.2 at 30/60/80 % of the run; 200 epochs on CIFAR, 100 on SVHN.
_WRN = Recipe("sgd", 0.1, 128, 200, momentum=0.9, weight_decay=5e-4,
              lr_milestones=(0.3, 0.6, 0.8), lr_decay=0.2)
# LeNet-5 of ZSKD (docs/methods/zskd.md, "Teacher recipes", [S]): Adam 1e-3, batch 512,
# 200 epochs, L2 1e-4.
_LENET5 = Recipe("adam", 1e-3, 512, 200, weight_decay=1e-4)
# Fashion-MNIST has no published LeNet-5 training code (same section). The MNIST
# recipe above overfits it (train 99.6 %, test 89.8 % after 200 epochs); this one keeps Adam and
# the L2 of [S], with batch 64 and one x0.1 step at 75 % (README "Benchmarks").
_LENET5_FASHION = Recipe("adam", 1e-3, 64, 20, weight_decay=1e-4, lr_milestones=(0.75,),
                         lr_decay=0.1)
# Lopes et al. (docs/methods/lopes.md, "Teacher training"): Adam 1e-3 (eps 1e-8), batch 64,
# 10 epochs, nothing else.
_LOPES = Recipe("adam", 1e-3, 64, 10)
# AlexNet of ZSKD (docs/methods/zskd.md, "Teacher recipes", [O]): Adam 1e-3, batch 512,
# 1000 epochs.
_ALEXNET = Recipe("adam", 1e-3, 512, 1000)

_BY_NAME = {"lenet5": _LENET5, "lenet5_half": _LENET5, "lenet": _LOPES, "lenet_half": _LOPES,
            "hinton1200": _LOPES, "hinton800": _LOPES, "alexnet": _ALEXNET,
            "alexnet_half": _ALEXNET}


def default_recipe(model_name: str, dataset: str) -> Recipe:
    if model_name.lower().startswith("wrn"):
        return dataclasses.replace(_WRN, epochs=100) if dataset == "svhn" else _WRN
    if model_name in ("lenet5", "lenet5_half") and dataset == "fashion_mnist":
        return _LENET5_FASHION
    return _BY_NAME.get(model_name, _LOPES)


def resolve(overrides, model_name: str, dataset: str) -> Recipe:
    """The default recipe with every field the user set by flag replaced.

    Args:
        overrides: a :class:`zskd_tf.trainers.train_config.RecipeOverrides` (``train``'s or
            ``distill``'s config), or anything with its attributes; None keeps the recipe's.
        model_name: the architecture trained.
        dataset: the dataset it is trained on.

    Returns:
        The :class:`Recipe`.
    """
    recipe = default_recipe(model_name, dataset)
    given = {field: getattr(overrides, field) for field in
             ("optimizer", "learning_rate", "batch_size", "epochs", "momentum",
              "weight_decay", "lr_decay", "lr_schedule")
             if getattr(overrides, field, None) is not None}
    if getattr(overrides, "lr_milestones", None) is not None:
        given["lr_milestones"] = tuple(overrides.lr_milestones)
    return dataclasses.replace(recipe, **given)


def learning_rate_schedule(recipe: Recipe, total_steps: int):
    """Constant; cosine annealing to 0 over the run; or x lr_decay at each milestone."""
    if recipe.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(recipe.learning_rate, total_steps)
    if recipe.lr_schedule == "constant" or not recipe.lr_milestones or recipe.lr_decay == 1.0:
        return recipe.learning_rate
    boundaries = [max(1, int(math.floor(f * total_steps))) for f in recipe.lr_milestones]
    values = [recipe.learning_rate * recipe.lr_decay ** i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def make_optimizer(recipe: Recipe, total_steps: int) -> keras.optimizers.Optimizer:
    """Build inside the strategy scope (docs/methods/keras_notes.md, "Optimizers and the
    strategy scope")."""
    lr = learning_rate_schedule(recipe, total_steps)
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=recipe.momentum)
    if recipe.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr, epsilon=recipe.adam_epsilon)
    raise UserError(f"--optimizer must be sgd or adam, got {recipe.optimizer!r}")
