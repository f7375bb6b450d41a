"""What a run shows: metric curves per epoch, a confusion matrix (clip runs), per-class bars (frame runs), a results table."""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _read_metrics(run_dir: Path) -> dict[str, dict[str, list[tuple[int, int, float]]]]:
    """metric -> phase -> [(step, epoch, value)] from the trainer's metrics.csv."""
    series: dict[str, dict[str, list[tuple[int, int, float]]]] = defaultdict(lambda: defaultdict(list))
    with open(run_dir / "metrics.csv") as f:
        for row in csv.DictReader(f):
            series[row["metric"]][row["phase"]].append((int(row["step"]), int(row["epoch"]), float(row["value"])))
    return series


def _per_epoch(points: list[tuple[int, int, float]], phase: str) -> tuple[list[float], list[float]]:
    """Training values averaged over each epoch, at the epoch's end; validation values as logged (after an epoch)."""
    if phase != "train":
        return [e for _, e, _ in points], [v for _, _, v in points]
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for _, epoch, value in points:
        by_epoch[epoch].append(value)
    return [e + 1 for e in sorted(by_epoch)], [float(np.mean(by_epoch[e])) for e in sorted(by_epoch)]


def plot_metrics(run_dir: str | os.PathLike, chance: dict[str, float] | None = None) -> Path:
    """One panel per metric (train mean and validation per epoch, dashed chance level) and a learning-rate panel.

    Runs without validation (pretraining by steps) are drawn against the step. Writes run_dir/curves.png.
    """
    fig = metrics_figure(run_dir, chance)
    out = Path(run_dir) / "curves.png"
    fig.savefig(out, dpi=100)
    _pyplot().close(fig)
    return out


def metrics_figure(run_dir: str | os.PathLike, chance: dict[str, float] | None = None):
    """The matplotlib figure ``plot_metrics`` saves."""
    run_dir, chance = Path(run_dir), chance or {}
    series = _read_metrics(run_dir)
    lr = series.pop("lr", {}).get("train", [])
    by_epoch = any("val" in phases for phases in series.values())
    panels = sorted(series) + (["learning rate"] if lr else [])
    plt = _pyplot()
    columns = min(len(panels), 4) or 1
    fig, axes = plt.subplots(math.ceil(len(panels) / columns) or 1, columns, figsize=(4 * columns, 3 * math.ceil(len(panels) / columns)),
                             squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    unit = "epoch" if by_epoch else "step"
    for ax, metric in zip(axes.flat, panels):
        if metric == "learning rate":  # per step, placed at the fraction of the epoch it was taken in
            steps_per_epoch = max(sum(1 for _, e, _ in lr if e == lr[0][1]), 1)
            ax.plot([s / steps_per_epoch if by_epoch else s for s, _, _ in lr], [v for _, _, v in lr], color="tab:gray")
        else:
            for phase, points in sorted(series[metric].items(), reverse=True):
                x, y = _per_epoch(points, phase) if by_epoch else ([s for s, _, _ in points], [v for _, _, v in points])
                ax.plot(x, y, marker="o" if by_epoch else None, ms=3, label=phase)
            if metric in chance:
                ax.axhline(chance[metric], ls="--", color="tab:red", lw=1, label=f"chance {chance[metric]:.3g}")
            ax.legend(fontsize=8)
        ax.set_title(metric)
        ax.set_xlabel(unit)
    fig.tight_layout()
    return fig


def plot_confusion(truth: np.ndarray, predicted: np.ndarray, labels: list[str], out: str | os.PathLike, title: str = "") -> Path:
    """A row-normalised confusion matrix with counts (single-label clip runs); writes ``out``."""
    n = len(labels)
    matrix = np.zeros((n, n), int)
    np.add.at(matrix, (truth, predicted), 1)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1 + 0.6 * n, 1 + 0.6 * n))
    ax.imshow(matrix / np.maximum(matrix.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, matrix[i, j], ha="center", va="center", fontsize=8)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {np.trace(matrix) / max(matrix.sum(), 1):.1%} on {matrix.sum()} clips")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def plot_class_scores(scores: dict[str, np.ndarray], labels: list[str], out: str | os.PathLike, title: str = "") -> Path:
    """Grouped horizontal bars, one group per class and one bar per score (frame F1, AP, ...); NaN (class absent) drawn as 'n/a'."""
    plt = _pyplot()
    n, k = len(labels), len(scores)
    fig, ax = plt.subplots(figsize=(7, 1 + 0.45 * n * max(k, 1) ** 0.5))
    height = 0.8 / max(k, 1)
    for j, (name, values) in enumerate(scores.items()):
        y = np.arange(n) + (j - (k - 1) / 2) * height
        ax.barh(y, np.nan_to_num(values), height=height, label=f"{name} (mean {np.nanmean(values):.2f})")
        for yi, value in zip(y, values):
            ax.text(0.01 if np.isnan(value) else value + 0.01, yi, "n/a" if np.isnan(value) else f"{value:.2f}", va="center", fontsize=7)
    ax.set_yticks(range(n), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("score")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "per-class scores on the test fold")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def results_table(results: dict[str, dict[str, float]], rows: tuple[str, ...] = ("test", "float", "int8", "chance")) -> str:
    """A plain-text table: one row per model or split present in ``results`` (in ``rows`` order), one column per metric."""
    rows = {name: results[name] for name in rows if name in results}
    metrics = list(dict.fromkeys(m for values in rows.values() for m in values))
    width = max([len(name) for name in rows] + [5])
    lines = [f"{'':<{width}}  " + "  ".join(f"{m:>14}" for m in metrics)]
    for name, values in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{values[m]:>14.1%}" if m in values else f"{'-':>14}" for m in metrics))
    return "\n".join(lines)
