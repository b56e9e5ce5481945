"""Flags of Lopes et al. (``--procedure=compute_stats`` and ``optimize_dataset``).

Their defaults are the fields of :mod:`zskd_tf.lopes.config`'s configs.
"""
from absl import flags

from zskd_tf.lopes import config

flags.DEFINE_string("stats", None, "stats.npz made by compute_stats, or its run directory.")
flags.DEFINE_enum("objective", config.RECONSTRUCTION_DEFAULTS.objective, config.OBJECTIVES,
                  "Reconstruction objective: match the top layer's statistics, every "
                  "layer's, or the spectral coefficients of all layers or of layer pairs.")
flags.DEFINE_float("spectral_keep", config.STATS_DEFAULTS.spectral_keep,
                   "Fraction of spectral coefficients kept by the spectral objectives.")
flags.DEFINE_enum("spectral_records", config.STATS_DEFAULTS.spectral_records,
                  config.SPECTRAL_RECORDS,
                  "What compute_stats keeps for the spectral objectives: per-class statistics "
                  "of the kept coefficients only (none), or also every training example's own "
                  "kept coefficients (examples), from which the spectral objectives then "
                  "rebuild their targets.")
