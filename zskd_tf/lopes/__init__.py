"""Lopes et al. (2017) data-free KD: the maths that is not a training step.

``recording``: the activations the method records (pre-ReLU taps and logits/T);
``statistics``: per-class Gaussian statistics and correct sampling from them;
``spectral``: the weight graph of the fully connected layers and its Fourier basis;
``metadata``: the passes over the training data that compute both (``compute_stats``);
``stats_file``: the ``stats.npz`` format, the teacher fingerprint and its checks;
``objectives``: the four reconstruction objectives (targets and loss);
``config``: the typed settings of ``compute_stats`` and ``optimize_dataset`` and their defaults.
Method notes: docs/methods/lopes.md; user documentation: README.md, Lopes section.
"""
