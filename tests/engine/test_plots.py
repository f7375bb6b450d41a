"""What a run shows: curves per epoch with chance and learning rate, per-class scores, the results table."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from earmark.engine import Trainer, TrainConfig, class_average_precision, class_f1, plot_class_scores, results_table
from earmark.engine.plots import metrics_figure


def test_curves_are_per_epoch_with_chance_and_a_learning_rate_panel(tmp_path):
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(x, (x[:, 0] > 0).long())
    model = nn.Linear(4, 2)
    step = lambda m, b: (nn.functional.cross_entropy(m(b[0]), b[1]), {})
    accuracy = lambda m: {"accuracy": float((m(x).argmax(1) == (x[:, 0] > 0)).float().mean())}
    config = TrainConfig(run_dir=str(tmp_path), epochs=3, batch_size=8, lr=0.1, warmup_steps=4, progress=False)
    Trainer(config, model, step, data, val_fn=accuracy).fit()
    fig = metrics_figure(tmp_path, {"accuracy": 0.5})
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert set(panels) == {"loss", "accuracy", "learning rate"}
    assert list(panels["loss"].lines[0].get_xdata()) == [1, 2, 3]  # 4 steps per epoch, averaged per epoch
    val, chance = panels["accuracy"].lines
    assert list(val.get_xdata()) == [1, 2, 3] and list(chance.get_ydata()) == [0.5, 0.5]
    lr = panels["learning rate"].lines[0]
    assert len(lr.get_xdata()) == 12 and lr.get_ydata()[0] == pytest.approx(0.1 / 4 * 2)  # warm-up, after the first step
    assert panels["accuracy"].get_xlabel() == "epoch"


def test_per_class_f1_and_ap_name_the_class_that_fails():
    targets = np.zeros((2, 5, 3))
    targets[0, :3, 0] = targets[1, 2:, 1] = 1  # class 2 never occurs
    scores = targets.copy()
    scores[1, :, 1] = 0.2  # class 1 always missed
    assert np.allclose(class_f1(scores, targets)[:2], [1.0, 0.0]) and np.isnan(class_f1(scores, targets)[2])
    clip_scores, clip_targets = np.array([[0.9, 0.1], [0.2, 0.7], [0.8, 0.8]]), np.array([[1, 0], [0, 1], [0, 0]])
    assert np.allclose(class_average_precision(clip_scores, clip_targets), [1.0, 0.5])


def test_class_bars_and_the_results_table(tmp_path):
    path = plot_class_scores({"frame F1": np.array([0.5, np.nan]), "clip AP": np.array([0.9, 0.1])}, ["dog", "siren"], tmp_path / "c.png")
    assert path.stat().st_size > 5_000
    table = results_table({"float": {"accuracy": 0.8, "macro_accuracy": 0.75}, "int8": {"accuracy": 0.79},
                           "chance": {"accuracy": 0.125, "macro_accuracy": 0.125}, "thresholds": {"dog": 0.5}})
    assert table.splitlines() == [
        "              accuracy  macro_accuracy",
        "float            80.0%           75.0%",
        "int8             79.0%               -",
        "chance           12.5%           12.5%",
    ]
