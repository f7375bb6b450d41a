"""Evaluation metrics on score arrays (no model knowledge): accuracy, mAP and frame-level F1."""

from __future__ import annotations

import numpy as np


def frame_f1(scores: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> float:
    """Micro F1 over all (frame, class) decisions of sigmoid frame scores."""
    predicted = scores >= threshold
    hits = (predicted & (targets > 0.5)).sum()
    return float(2 * hits / max(predicted.sum() + (targets > 0.5).sum(), 1))


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean over classes with positives of the average precision (AudioSet's mAP)."""
    aps = []
    for k in range(targets.shape[1]):
        if targets[:, k].sum() == 0:
            continue
        order = np.argsort(-scores[:, k])
        hits = targets[order, k]
        precision = np.cumsum(hits) / (np.arange(len(hits)) + 1)
        aps.append(float((precision * hits).sum() / hits.sum()))
    return float(np.mean(aps)) if aps else 0.0


def accuracies(predicted: np.ndarray, truth: np.ndarray, classes: int) -> dict[str, float]:
    """Top-1 accuracy and macro (class-wise mean) accuracy over the classes present, from class indices."""
    per_class = [float((predicted[truth == k] == k).mean()) for k in range(classes) if (truth == k).any()]
    return {"accuracy": float((predicted == truth).mean()), "macro_accuracy": float(np.mean(per_class))}
