"""Accuracy figures from predicted class scores."""
from __future__ import annotations

import numpy as np


def accuracy_report(scores: np.ndarray, labels: np.ndarray, class_names) -> dict:
    """Top-1 accuracy overall and per class (by name), and the number of examples."""
    labels = np.asarray(labels).reshape(-1)
    predicted = np.argmax(scores, axis=-1)
    correct = predicted == labels
    per_class = {}
    for k, name in enumerate(class_names):
        mask = labels == k
        if mask.any():
            per_class[str(name)] = float(correct[mask].mean())
    return {"accuracy": float(correct.mean()) if len(labels) else 0.0,
            "per_class_accuracy": per_class, "num_examples": int(len(labels))}
