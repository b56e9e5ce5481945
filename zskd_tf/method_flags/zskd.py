"""Flags of ZSKD (``--procedure=data_impressions``).

Their defaults are the fields of :class:`zskd_tf.zskd.config.ImpressionConfig`.
"""
from absl import flags

from zskd_tf.constants import IMPRESSION_INITS
from zskd_tf.zskd.config import DEFAULTS as _D

flags.DEFINE_list("betas", [str(beta) for beta in _D.betas],
                  "Dirichlet concentration scales; the impressions are split equally among "
                  "them (and among the classes).")
flags.DEFINE_string("final_layer", _D.final_layer,
                    "Name of the teacher's final Dense layer (default: found automatically).")
flags.DEFINE_list("input_range", None,
                  "Foreign teachers without model_info.json: LOW,HIGH of their input values "
                  "(default 0,1).")
flags.DEFINE_enum("impression_init", _D.impression_init, tuple(IMPRESSION_INITS),
                  "Starting images: uniform over the teacher's input range (the authors' "
                  "official code) or N(0, 1) scaled to it (sseung0703's MNIST port, whose "
                  "clipped impressions are half black like real digits).")
flags.DEFINE_float("impression_l2", _D.impression_l2,
                   "Weight of sseung0703's image penalty mean_i sum(x_i^2) / 2 added to the "
                   "impression loss (his MNIST code: 1e-3; the paper and the authors' code: 0).")
flags.DEFINE_list("impression_l2_mix", list(_D.impression_l2_mix),
                  "Several image L2 weights instead of --impression_l2's one: row r of every "
                  "synthesis batch takes the (r mod K)-th of the K weights, so the impressions "
                  "are split equally among them, in every class and beta; replaces "
                  "--impression_l2 when given (not in ZSKD; e.g. 1e-3,1e-1: "
                  "docs/zskd_recipe_study.md).")
flags.DEFINE_float("impression_tv", _D.impression_tv,
                   "Weight of a smoothness prior added to the impression loss: the mean over "
                   "images of the summed squared differences of neighbouring pixels (not in "
                   "ZSKD; 0 by default).")
flags.DEFINE_integer("impression_jitter", _D.impression_jitter,
                     "At every synthesis step, show the teacher the batch rolled by a random "
                     "offset of up to this many pixels per axis (DeepInversion's jitter; not "
                     "in ZSKD; 0 by default).")
flags.DEFINE_boolean("impression_flip", _D.impression_flip,
                     "At every synthesis step, mirror the batch left-right with probability "
                     "1/2 before the teacher sees it (not in ZSKD).")
flags.DEFINE_float("impression_bn_weight", _D.impression_bn_weight,
                   "Weight of DeepInversion's feature-statistics prior added to the impression "
                   "loss: the distance of each teacher BatchNorm layer's batch mean and "
                   "variance to its moving statistics (teachers with BatchNormalization, e.g. "
                   "WRNs; not in ZSKD; 0 by default, 1 by default in --procedure=quantize).")
