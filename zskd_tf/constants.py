"""Named choices shared by the command line and the code that implements them.

Plain values, no imports: the flags are defined from these without loading TensorFlow, and
the module that implements each choice takes it from here (docs/architecture.md).
"""

# Training augmentations (zskd_tf.data.preprocess); --augment adds "auto". The mixing kinds
# blend two images into one, whose class no stored label gives: only a teacher scoring every
# view online can train on them.
AUGMENTATIONS = ("none", "crop_flip", "affine", "affine_wide", "affine_mixup")
MIXING_AUGMENTATIONS = ("affine_mixup",)

# How the half-width copy of a Keras teacher starts (--student_init; zskd_tf.models.
# teacher_channels, zskd_tf.api.narrower_student): the teacher's strongest channels, or fresh.
STUDENT_INITS = ("teacher", "random")

# ZSKT (zskd_tf.zskt.trainer): the loop variant (--variant), and what generator and
# student fight over (--matching_loss: the paper's KL; DFAD's mean absolute logit difference).
ZSKT_VARIANTS = ("original", "modified")
ZSKT_MATCHING_LOSSES = ("kl", "l1")

# ZSKD (zskd_tf.zskd.targets): --impression_init choices and how each is described in an
# impressions file's meta.
IMPRESSION_INITS = {"uniform": "uniform over the teacher's input range",
                    "normal": "N(0, 1) scaled to the teacher's input range, clipped to it"}
