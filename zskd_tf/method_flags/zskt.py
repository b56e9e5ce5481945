"""Flags of ZSKT (``--procedure=zero_shot`` and ``transition_curves``).

Their defaults are the fields of :class:`zskd_tf.zskt.config.ZeroShotConfig`.
"""
from absl import flags

from zskd_tf.zskt import config as zsc

_D = zsc.DEFAULTS
flags.DEFINE_integer("iterations", None,
                     f"Outer iterations N (default: the paper's {zsc.PAPER_ITERATIONS:,}; "
                     f"{zsc.paper_iterations('svhn'):,} on SVHN).")
flags.DEFINE_integer("n_generator_steps", _D.n_generator_steps,
                     "Generator steps per outer iteration (n_G).")
flags.DEFINE_integer("n_student_steps", _D.n_student_steps,
                     "Student steps per outer iteration (n_S).")
flags.DEFINE_integer("z_dim", _D.z_dim, "Generator noise dimension.")
flags.DEFINE_float("student_lr", _D.student_lr, "Student Adam learning rate (cosine to 0).")
flags.DEFINE_float("generator_lr", _D.generator_lr,
                   "Generator Adam learning rate (cosine to 0).")
flags.DEFINE_enum("variant", _D.variant, zsc.VARIANTS,
                  "original: the paper's loop; modified: new z and new images for every "
                  "student step (the public replication's variant).")
flags.DEFINE_enum(
    "matching_loss", _D.matching_loss, zsc.MATCHING_LOSSES,
    "What generator and student fight over: kl, the paper's KL(teacher || student) "
    "(element mean); l1, the mean absolute difference of their logits (DFAD, Fang et al. "
    "2019; not in the paper). The logged generator_kl/student_kl stay the KL either way.")
flags.DEFINE_enum(
    "generator_range", _D.generator_range, zsc.GENERATOR_RANGES,
    "free: the generator's output is its final BatchNorm's, unbounded (the paper); teacher: "
    "squashed into the teacher's valid input range by a per-channel scaled sigmoid (for "
    "teachers fed x/255 in [0, 1] such as LeNet-5; not in the paper).")
flags.DEFINE_integer(
    "generator_width", _D.generator_width,
    "Channels of the generator's seed and first convolution; the second has half as many "
    "(the paper: 128). Narrower generators suit small students (e.g. LeNets) and cost "
    "width^2 less in their convolutions.")
flags.DEFINE_boolean(
    "mixed_bfloat16", _D.mixed_bfloat16,
    "zero_shot: student and generator compute in bfloat16 (Keras mixed_bfloat16 policy; "
    "variables, losses and Adam stay float32) and the teacher's convolution input gradients "
    "too; the teacher's forward stays float32. For CPUs with AVX512-BF16/AMX and for GPUs "
    "with bfloat16; the saved student is float32. Not in the paper (which runs float32).")
flags.DEFINE_float(
    "freeze_generator_at", _D.freeze_generator_at,
    "zero_shot: fraction of --iterations after which the generator's learning rate is 0: it "
    "stops moving while the student keeps learning from it to the end. 1 (the default, the "
    "paper): both train to the end. Not in the paper; meant against a late collapse where a "
    "generator that still moves drags a low-rate student away from the real data.")
flags.DEFINE_float(
    "generator_bn_weight", _D.generator_bn_weight,
    "zero_shot: weight w of a feature-statistics term in the generator's loss, "
    "-KL + w * sum over the teacher's BatchNorm layers of ||batch mean - moving mean|| + "
    "||batch variance - moving variance|| (DeepInversion's prior, Yin et al. 2020): the "
    "generated images must also look like the real data to the teacher's BN layers. 0 (the "
    "default, the paper): -KL only. Needs a Keras teacher with BatchNormalization layers.")
flags.DEFINE_float(
    "generator_balance_weight", _D.generator_balance_weight,
    "zero_shot: weight w of a class-balance term in the generator's loss, -KL + w * (log C - "
    "H(mean teacher prediction over the batch)) (DAFL's information-entropy loss, Chen et al. "
    "2019): the generator must keep showing the teacher every class about equally often. 0 "
    "(the default, the paper): -KL only. Works with any teacher.")
flags.DEFINE_float(
    "generator_confidence_weight", _D.generator_confidence_weight,
    "zero_shot: weight w of a confidence term in the generator's loss, -KL + w * CE(teacher "
    "softmax, its own top class) (DAFL's one-hot loss, Chen et al. 2019): the generated images "
    "must be ones the teacher classifies with confidence, not only ones where the student "
    "disagrees. 0 (the default, the paper): -KL only. Works with any teacher.")
flags.DEFINE_list("seeds", None, "Run one student per seed and report mean and std.")
flags.DEFINE_string("student_run", None,
                    "transition_curves: the run directory or model file of the network "
                    "to attack.")
flags.DEFINE_integer("num_images", 1000, "transition_curves: images where both nets agree.")
flags.DEFINE_integer("adversarial_steps", 100, "transition_curves: K gradient steps.")
flags.DEFINE_float("step_size", 1.0, "transition_curves: step size xi.")
