"""PNG plots of a run: metric curves from metrics.csv and a confusion matrix."""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(run_dir: str | os.PathLike) -> Path:
    """One panel per metric, train and validation curves against the step; writes run_dir/curves.png."""
    run_dir = Path(run_dir)
    series: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    with open(run_dir / "metrics.csv") as f:
        for row in csv.DictReader(f):
            series[row["metric"]][row["phase"]].append((int(row["step"]), float(row["value"])))
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3), squeeze=False)
    for ax, (metric, phases) in zip(axes[0], sorted(series.items())):
        for phase, points in phases.items():
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if phase == "val" else None, label=phase)
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_confusion(truth: np.ndarray, predicted: np.ndarray, labels: list[str], out: str | os.PathLike, title: str = "") -> Path:
    """A row-normalised confusion matrix with counts; writes ``out``."""
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
    ax.set_title(title or f"accuracy {np.trace(matrix) / max(matrix.sum(), 1):.1%}")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
