"""ZSKT (Micaelli and Storkey 2019): zero-shot knowledge transfer by adversarial belief matching.

* :mod:`config` — the typed settings of ``zero_shot`` and their defaults (no TensorFlow);
* :mod:`generator` — the generator network, noise to images in the teacher's input space;
* :mod:`adversarial_losses` — the losses of the game that no other method uses (the L1 logit
  matching, the generator's class-balance and confidence terms);
* :mod:`trainer` — one outer iteration as a Keras ``train_step``, its optimizers and noise;
* :mod:`transition_attack` — transition curves and the mean transition error, the maths of
  ``--procedure=transition_curves``;
* :mod:`transition_figure` — drawing those curves (OpenCV, no TensorFlow).

The procedures (``procedures/zero_shot.py``, ``procedures/transition_curves.py``) and the flags
(``method_flags/zskt.py``) stay in their layers. Method notes: docs/methods/zskt.md; user
guide: docs/guide/zskt.md.
"""
