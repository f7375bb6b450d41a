"""Clip metrics on a clip manifest: accuracy, macro accuracy, mAP and a confusion matrix, through the runtime's windows."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from earmark.audio.io import load_audio
from earmark.audio.manifest import Manifest
from earmark.runtime import load_backend
from earmark.runtime.stream import classify_wave


def clip_scores(model: str | os.PathLike, manifest: Manifest, head: str = "clip") -> np.ndarray:
    """(clips, classes) probabilities: every window of a clip (zero-padded to one window, as in training) through
    the runtime; scene models (and a ``head="scene"``) average their windows, detectors keep each class's maximum."""
    backend = load_backend(model)
    meta = backend.metadata
    window = round(meta.window_seconds * meta.frontend.sample_rate)
    pool = np.max if meta.objective == "detect" and head == "clip" else np.mean
    rows = []
    for clip in manifest.clips:
        wave = load_audio(clip.path, meta.frontend.sample_rate)
        wave = np.pad(wave, (0, max(0, window - wave.size)))
        rows.append(pool(np.stack([getattr(result, head) for result in classify_wave(backend, wave)]), axis=0))
    return np.stack(rows)


def clip_metrics(model: str | os.PathLike, manifest: Manifest, out: Path) -> dict:
    """Accuracy and macro accuracy of the top label (single-label manifests), mAP, and ``out/confusion.png``.

    A model with a scene head is scored by that head when the data's labels are its scenes (a scene manifest).
    """
    from earmark.engine import accuracies, average_precision, plot_confusion

    meta = load_backend(model).metadata
    wanted = set(manifest.labels.to_list())
    head = "scene" if meta.scene_labels and wanted <= set(meta.scene_labels) and not wanted <= set(meta.labels) else "clip"
    labels = list(meta.scene_labels if head == "scene" else meta.labels)
    unknown = sorted(wanted - set(labels))
    if unknown:
        scenes = f" or its scenes {list(meta.scene_labels)}" if meta.scene_labels else ""
        raise ValueError(f"the data's labels {unknown} are not among the model's labels {labels}{scenes}; evaluate a model trained "
                         "on these labels.")
    if not manifest.clips:
        raise ValueError(f"{manifest.source}: no clips to evaluate.")
    scores = clip_scores(model, manifest, head)
    targets = np.zeros_like(scores)
    for row, clip in enumerate(manifest.clips):
        targets[row, [labels.index(label) for label in clip.labels]] = 1
    results = {"kind": "clips", "head": head, "clips": len(manifest.clips), "map": average_precision(scores, targets)}
    predicted = scores.argmax(1)
    if manifest.multi_label:
        results["top1_in_labels"] = float(targets[np.arange(len(predicted)), predicted].mean())
        return results
    truth = targets.argmax(1)
    results.update(accuracies(predicted, truth, len(labels)))
    results["confusion"] = str(plot_confusion(truth, predicted, labels, out / "confusion.png"))
    return results
