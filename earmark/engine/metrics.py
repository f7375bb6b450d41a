"""Evaluation metrics on score arrays (no model knowledge): accuracy, mAP and frame-level F1."""

from __future__ import annotations

import numpy as np


def frame_f1(scores: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> float:
    """Micro F1 over all (frame, class) decisions of sigmoid frame scores."""
    predicted = scores >= threshold
    hits = (predicted & (targets > 0.5)).sum()
    return float(2 * hits / max(predicted.sum() + (targets > 0.5).sum(), 1))


def class_f1(scores: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """F1 per class (last axis) over all frames or clips: 2 TP / (P + predicted P); NaN where a class never occurs."""
    predicted, positive = scores >= threshold, targets > 0.5
    axes = tuple(range(scores.ndim - 1))
    hits, occurs = (predicted & positive).sum(axes), positive.sum(axes)
    return np.where(occurs > 0, 2 * hits / np.maximum(predicted.sum(axes) + occurs, 1), np.nan)


def class_average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Average precision per class of (clips, classes) scores; NaN where a class has no positive clip."""
    aps = np.full(targets.shape[1], np.nan)
    for k in range(targets.shape[1]):
        hits = targets[np.argsort(-scores[:, k]), k] > 0.5
        if hits.any():
            precision = np.cumsum(hits) / (np.arange(len(hits)) + 1)
            aps[k] = (precision * hits).sum() / hits.sum()
    return aps


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean over classes with positives of the average precision (AudioSet's mAP)."""
    aps = class_average_precision(scores, targets)
    return float(np.nanmean(aps)) if np.isfinite(aps).any() else 0.0


def accuracies(predicted: np.ndarray, truth: np.ndarray, classes: int) -> dict[str, float]:
    """Top-1 accuracy and macro (class-wise mean) accuracy over the classes present, from class indices."""
    per_class = [float((predicted[truth == k] == k).mean()) for k in range(classes) if (truth == k).any()]
    return {"accuracy": float((predicted == truth).mean()), "macro_accuracy": float(np.mean(per_class))}
