"""ZSKD (Nayak et al. 2019) maths that is not a training step.

* :mod:`concentration` — the class-similarity (concentration) matrix of the teacher's final
  Dense layer (docs/methods/zskd.md, "Concentration matrix");
* :mod:`targets` — the plan of Dirichlet targets: which class row and beta each impression
  uses, and the seeded sampling of each batch's targets;
* :mod:`teacher` — any accepted teacher (zskd_tf run directory, foreign ``.keras`` file or
  SavedModel) as logits model + final Dense kernel + input space;
* :mod:`figures` — the OpenCV drawings behind ``tools/visualize_*.py``;
* :mod:`config` — the typed settings of ``data_impressions`` and their defaults.
"""
