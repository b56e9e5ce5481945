"""Zero-shot knowledge transfer by adversarial belief matching: the ZSKT training loop
(docs/methods/zskt.md, "One outer iteration").

One ``fit`` step of :class:`ZeroShotTrainer` is one *outer iteration* of the paper:

1. ``n_generator_steps`` generator updates on ``-KL(teacher || student)`` of the images
   ``G(z)``. The gradient flows through the student (train mode, so its BN statistics move)
   and through the frozen teacher (inference mode), including the teacher's softmax; only
   input gradients are taken through the two networks, never their weight gradients.
2. ``original`` variant: the images are regenerated from the same z by the updated generator
   (under stop-gradient), the teacher's logits and attention maps are computed once, and the
   student takes ``n_student_steps`` steps on ``KL + beta * AT`` of that one batch.
   ``modified`` variant (docs/methods/zskt.md, "The modified variant"): every student step
   draws new noise, so it gets new images and new teacher outputs.

With ``ema_momentum`` > 0 (not in the paper) a moving average of the student's weights follows
every student step (``trainers.weight_average``); the procedure keeps it as the student. With
``augment`` (not in the paper) each student step sees its own random views of the images,
which the teacher scores anew (``ZeroShotTrainer.student_views``).

The KL is PyTorch's element mean over B x C (``losses.kl_element_mean``), the AT term
Zagoruyko's attention maps summed over the taps. Both networks use Adam (eps 1e-8) with a
cosine schedule over the *outer* iterations (constant within one: docs/methods/zskt.md,
"Optimisers and schedule") and global-norm gradient clipping at 5.

Noise: the step is given its noise as data (``noise_dataset``): iteration t's z is a pure
function of (seed, t). Under a MirroredStrategy the global batch of z is split across the
replicas, so every replica gets different noise, and a resumed run draws exactly the noise an
uninterrupted one would have drawn; no RNG state needs checkpointing.

Several replicas: per-replica losses are divided by the number of replicas, gradients are
summed over replicas *before* the global-norm clipping (Keras's own ``global_clipnorm`` would
clip each replica's share separately), then handed to the optimizer, which sums them once more
(hence the second division). BatchNorm statistics (student, generator) are per replica, as
with PyTorch DataParallel.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from zskd_tf import losses
from zskd_tf.data import preprocess as pp
from zskd_tf.models import taps as taps_lib
from zskd_tf.trainers.distributed import SymbolicBuildFix, replica_logs
from zskd_tf.trainers.weight_average import WeightAverage
from zskd_tf.zskt import adversarial_losses
from zskd_tf.zskt.config import ZeroShotConfig


class IterationCosine(keras.optimizers.schedules.LearningRateSchedule):
    """``lr0 * (1 + cos(pi * t / N)) / 2`` with t the outer iteration of the optimizer step.

    An optimizer that takes ``steps_per_iteration`` steps per outer iteration is at iteration
    ``t = step // steps_per_iteration``: the rate is constant within an iteration, as with
    PyTorch's ``CosineAnnealingLR(T_max=N)`` stepped once per iteration. With
    ``stop_iteration`` the rate is 0 from that iteration on (Adam then leaves the weights
    exactly as they are).
    """

    def __init__(self, initial_learning_rate: float, iterations: int,
                 steps_per_iteration: int, stop_iteration: int | None = None):
        self.initial_learning_rate = float(initial_learning_rate)
        self.iterations = int(iterations)
        self.steps_per_iteration = int(steps_per_iteration)
        self.stop_iteration = stop_iteration

    def __call__(self, step):
        t = tf.cast(step, tf.int64) // self.steps_per_iteration
        rate = self.initial_learning_rate * 0.5 * (
            1.0 + tf.cos(math.pi * tf.cast(t, tf.float32) / self.iterations))
        if self.stop_iteration is None:
            return rate
        return tf.where(t < self.stop_iteration, rate, 0.0)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "iterations": self.iterations, "steps_per_iteration": self.steps_per_iteration,
                "stop_iteration": self.stop_iteration}


def make_optimizers(config: ZeroShotConfig):
    """The two Adam optimizers of ZSKT, each with its per-iteration cosine schedule.

    Create them inside the strategy scope (docs/methods/keras_notes.md, "Optimizers and the
    strategy scope").

    Args:
        config: the run's settings (learning rates, iterations, steps per iteration, the
            iteration at which the generator freezes).

    Returns:
        (generator optimizer, student optimizer).
    """
    def adam(lr, steps, stop=None):
        return keras.optimizers.Adam(IterationCosine(lr, config.iterations, steps, stop),
                                     epsilon=1e-8)
    return (adam(config.generator_lr, config.n_generator_steps, config.generator_stop_iteration),
            adam(config.student_lr, config.n_student_steps))


def noise_dataset(seed: int, start: int, stop: int, global_batch: int, draws: int,
                  z_dim: int) -> tf.data.Dataset:
    """The noise of iterations ``start..stop-1``, z ~ N(0, I), a pure function of
    ``(seed, iteration)``: a resumed run draws what an uninterrupted one would have drawn.

    Args:
        seed: the run's seed.
        start: the first outer iteration.
        stop: one past the last outer iteration.
        global_batch: images per iteration, over all replicas.
        draws: z batches per iteration (``ZeroShotConfig.noise_draws``).
        z_dim: length of z.

    Returns:
        A dataset of one float32 ``(global_batch, draws, z_dim)`` element per iteration.
    """
    def draw(t):
        return tf.random.stateless_normal((global_batch, draws, z_dim),
                                          seed=tf.stack([tf.constant(seed, tf.int64), t]))
    return (tf.data.Dataset.range(start, stop).map(draw).unbatch().batch(global_batch)
            .prefetch(2))


class ZeroShotTrainer(SymbolicBuildFix, keras.Model):
    """Holds the frozen teacher, the student and the generator; ``fit`` on
    ``noise_dataset`` batches trains the last two, ``evaluate`` on ``(x, y)`` batches reports
    the student's accuracy. Call ``compile(generator_optimizer, student_optimizer)``.

    ``seed`` and ``input_spec`` serve ``config.augment`` only: the views are a pure function of
    (seed, iteration, student step), and the area a view uncovers is filled with the teacher's
    black (``input_spec.black_level``; without a spec, 0 in its input space)."""

    def __init__(self, teacher: keras.Model, student: keras.Model, generator: keras.Model,
                 config: ZeroShotConfig, *, seed: int = 0, input_spec=None, **kwargs):
        super().__init__(**kwargs)
        teacher.trainable = False
        self.teacher, self.student, self.generator = teacher, student, generator
        self.config = config
        self.seed, self.input_spec = int(seed), input_spec
        at_taps = config.at_taps if config.beta else ()
        self.teacher_with_taps = taps_lib.with_taps(teacher, at_taps)
        self.student_with_taps = taps_lib.with_taps(student, at_taps)
        if config.generator_bn_weight:
            self.teacher_bn_layers = taps_lib.batchnorm_layers(teacher)
            self.teacher_with_bn_inputs = taps_lib.with_batchnorm_inputs(teacher)
        self.iteration = keras.Variable(0, dtype="int64", trainable=False, name="iteration",
                                        aggregation="only_first_replica")
        # --ema_momentum: the student's weight average, moved after every student step.
        self.weight_average = (WeightAverage(student, config.ema_momentum)
                               if config.ema_momentum else None)
        names = ("generator_kl", "student_loss", "student_kl", "attention", "teacher_confidence",
                 "student_confidence", "generator_grad_norm", "student_grad_norm")
        if config.generator_bn_weight:
            names += ("generator_bn",)
        if config.generator_balance_weight:
            names += ("generator_balance",)
        if config.generator_confidence_weight:
            names += ("generator_confidence",)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        # Every sub-model is built (docs/methods/keras_notes.md, "Built wrapper models").
        self.built = True

    @property
    def metrics(self):
        return [*self.trackers.values(), self.accuracy]

    def compile(self, generator_optimizer, student_optimizer, **kwargs):
        """Both optimizers are built here, inside the caller's strategy scope
        (docs/methods/keras_notes.md, "Optimizers and the strategy scope")."""
        super().compile(optimizer=None, **kwargs)
        self.generator_optimizer = generator_optimizer
        self.student_optimizer = student_optimizer
        generator_optimizer.build(self.generator.trainable_variables)
        student_optimizer.build(self.student.trainable_variables)

    def call(self, x, training=False):
        return self.student(x, training=training)

    # -- pieces of one iteration ------------------------------------------------------------
    def _update(self, optimizer, tape, scaled_loss, variables):
        """Clips the replica-summed gradient to the global norm, then applies it."""
        grads = tape.gradient(scaled_loss, variables)
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        if replicas > 1:
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        grads, norm = tf.clip_by_global_norm(grads, self.config.clip_norm)
        optimizer.apply([g / replicas for g in grads] if replicas > 1 else grads, variables)
        return norm

    def matching(self, t_logits, s_logits):
        """(the disagreement the two players fight over, the KL): the KL itself by default,
        or the mean absolute logit difference with ``matching_loss='l1'``."""
        kl = losses.kl_element_mean(t_logits, s_logits, self.config.temperature)
        if self.config.matching_loss == "l1":
            return adversarial_losses.logit_l1(t_logits, s_logits), kl
        return kl, kl

    def generator_loss(self, z):
        """(loss, KL, extra terms) of G(z), differentiable with respect to the generator's
        weights. The loss is the paper's -disagreement, plus two opt-in terms that are not in
        the paper, each tracked under its name in the extra terms when its weight is > 0:

        * ``generator_bn_weight`` w: ``+ w * R``, R the sum over the teacher's BatchNorm
          layers of ``losses.batchnorm_statistics``: the generator must also keep the
          teacher's features at the statistics they had on the real training data
          (DeepInversion's prior).
        * ``generator_balance_weight`` w: ``+ w * adversarial_losses.class_imbalance``: the
          teacher's mean prediction over the batch must stay near uniform, so the generator
          cannot settle on a few classes (DAFL's information-entropy term).
        * ``generator_confidence_weight`` w: ``+ w * adversarial_losses.teacher_uncertainty``:
          the teacher's cross-entropy against its own top class, so the images must also be
          ones the teacher is sure of (DAFL's one-hot term).
        """
        images = self.generator(z, training=True)
        s_logits = self.student(images, training=True)
        if self.config.generator_bn_weight:
            t_logits, bn_inputs = self.teacher_with_bn_inputs(images, training=False)
        else:  # no stop_gradient: the generator learns through the frozen teacher
            t_logits, bn_inputs = self.teacher(images, training=False), []
        disagreement, kl = self.matching(t_logits, s_logits)
        loss, extra = -disagreement, {}
        if self.config.generator_bn_weight:
            extra["generator_bn"] = losses.batchnorm_prior(bn_inputs, self.teacher_bn_layers)
            loss += self.config.generator_bn_weight * extra["generator_bn"]
        if self.config.generator_balance_weight:
            extra["generator_balance"] = adversarial_losses.class_imbalance(t_logits)
            loss += self.config.generator_balance_weight * extra["generator_balance"]
        if self.config.generator_confidence_weight:
            extra["generator_confidence"] = adversarial_losses.teacher_uncertainty(t_logits)
            loss += self.config.generator_confidence_weight * extra["generator_confidence"]
        return loss, kl, extra

    def student_targets(self, z):
        """Images G(z) and the teacher's logits and taps on them, all constants."""
        return self._scored(self._generated(z))

    def _student_batch(self, z):
        """What the student steps of one z start from: ``student_targets(z)``; or, when each
        step trains on its own views (``augment``), G(z) alone, as ``(images,)``: the
        teacher scores the views, never the images they replace."""
        if self.config.augment == "none":
            return self.student_targets(z)
        return (self._generated(z),)

    def _generated(self, z):
        """G(z), a constant for the student's steps."""
        return tf.stop_gradient(self.generator(z, training=True))

    def _scored(self, images):
        """(images, the teacher's logits, its taps), the last two constants."""
        t_logits, t_taps = self.teacher_with_taps(images, training=False)
        return images, tf.stop_gradient(t_logits), [
            tf.stop_gradient(tf.cast(t, tf.float32)) for t in t_taps.values()]

    def student_views(self, targets, step: int):
        """What student step ``step`` of this iteration trains on. ``augment`` 'none' (the
        paper): ``targets`` themselves. Otherwise (only ``targets[0]``, the images, is read) a
        random view of each image
        (``preprocess.augment``: affine zoom, rotation and shift, or crop, then a left-right
        flip; the same kinds as ``distill --augment``), scored anew by the teacher: not in the
        paper, the way ``distill --augment=affine --targets=teacher`` trains on synthetic
        images. The views are a pure function of (seed, iteration, step), so a resumed run
        sees the views an uninterrupted one would have seen."""
        if self.config.augment == "none":
            return targets
        images = targets[0]
        seed = tf.stack([tf.constant(self.seed, tf.int64),
                         self.iteration * self.config.n_student_steps + step])
        views = pp.augment(tf.cast(images, tf.float32), self.config.augment, seed,
                           spec=self.input_spec)
        return self._scored(tf.cast(views, images.dtype))

    def student_loss(self, images, t_logits, t_taps):
        """(disagreement + beta * AT, KL, AT, student logits) with the student in train
        mode; the disagreement is the KL unless ``matching_loss='l1'``."""
        s_logits, s_taps = self.student_with_taps(images, training=True)
        disagreement, kl = self.matching(t_logits, s_logits)
        attention = (losses.attention_transfer([tf.cast(s, tf.float32) for s in s_taps.values()],
                                               t_taps)
                     if self.config.beta else tf.constant(0.0))
        return disagreement + self.config.beta * attention, kl, attention, s_logits

    def _generator_step(self, z, replicas):
        with tf.GradientTape() as tape:
            loss, kl, extra = self.generator_loss(z)
            scaled = loss / replicas
        norm = self._update(self.generator_optimizer, tape, scaled,
                            self.generator.trainable_variables)
        self._track(generator_kl=kl, generator_grad_norm=norm, **extra)

    def _student_step(self, images, t_logits, t_taps, replicas):
        with tf.GradientTape() as tape:
            loss, kl, attention, s_logits = self.student_loss(images, t_logits, t_taps)
            scaled = loss / replicas
        norm = self._update(self.student_optimizer, tape, scaled,
                            self.student.trainable_variables)
        if self.weight_average is not None:
            self.weight_average.update(self.student_optimizer.iterations)
        self._track(student_loss=loss, student_kl=kl, attention=attention,
                    student_grad_norm=norm, teacher_confidence=_confidence(t_logits),
                    student_confidence=_confidence(s_logits))

    def _track(self, **values):
        for name, value in values.items():
            self.trackers[name].update_state(value)

    # -- Keras steps ------------------------------------------------------------------------
    def train_step(self, data):
        """One outer iteration; ``data`` is this replica's noise, (batch, draws, z_dim)."""
        z = data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        rates = {"generator_lr": self.generator_optimizer.learning_rate,  # this iteration's
                 "student_lr": self.student_optimizer.learning_rate}
        for _ in range(self.config.n_generator_steps):
            self._generator_step(z[:, 0], replicas)
        if self.config.variant == "original":
            batch = self._student_batch(z[:, 0])
            for k in range(self.config.n_student_steps):
                self._student_step(*self.student_views(batch, k), replicas)
        else:
            for k in range(self.config.n_student_steps):
                self._student_step(*self.student_views(self._student_batch(z[:, k + 1]), k),
                                   replicas)
        self.iteration.assign_add(1)
        return replica_logs({**{name: t.result() for name, t in self.trackers.items()}, **rates})

    def test_step(self, data):
        x, y = data
        self.accuracy.update_state(y, self.student(x, training=False))
        return replica_logs({"accuracy": self.accuracy.result()})


def _confidence(logits):
    """Mean over the batch of the largest class probability."""
    return tf.reduce_mean(tf.reduce_max(tf.nn.softmax(logits), axis=-1))
