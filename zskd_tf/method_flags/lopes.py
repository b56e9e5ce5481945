"""Flags of Lopes et al. (``--procedure=compute_stats`` and ``optimize_dataset``)."""
from absl import flags

flags.DEFINE_string("stats", None, "stats.npz made by compute_stats, or its run directory.")
flags.DEFINE_enum("objective", "top_layer",
                  ("top_layer", "all_layers", "spectral_all_layers", "spectral_layer_pairs"),
                  "Reconstruction objective: match the top layer's statistics, every "
                  "layer's, or the spectral coefficients of all layers or of layer pairs.")
flags.DEFINE_float("spectral_keep", 0.1,
                   "Fraction of spectral coefficients kept by the spectral objectives.")
