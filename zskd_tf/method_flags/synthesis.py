"""Flags shared by the procedures that synthesise a dataset (data_impressions, optimize_dataset).

Defaults are None: each procedure applies its paper's default (see its module docstring).
"""
from absl import flags

flags.DEFINE_integer("num_samples", None, "Synthetic images to make in total.")
flags.DEFINE_integer("synthesis_steps", None, "Optimisation steps per batch of images.")
flags.DEFINE_integer("synthesis_batch_size", None, "Images optimised together (global batch).")
flags.DEFINE_float("synthesis_lr", None, "Adam learning rate of the image optimisation.")
flags.DEFINE_boolean(
    "fast_input_gradient", True,
    "Differentiate the teacher's first few-channel valid convolutions with respect to the "
    "images through their 2x2 space-to-depth form: the same gradient up to float rounding, "
    "computed faster on CPU (zskd_tf/trainers/input_gradients.py).")
flags.DEFINE_boolean(
    "bfloat16_input_gradient", False,
    "Compute the teacher's convolution input gradients in bfloat16 (the forward pass, the loss "
    "and Adam stay float32): a gradient equal to float32's up to bfloat16 rounding, faster only "
    "on hardware with bfloat16 units (e.g. CPUs with AMX or AVX512-BF16) and slower without "
    "them.")
