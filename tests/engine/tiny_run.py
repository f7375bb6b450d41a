"""A tiny regression run used by the engine tests, alone or under torchrun: python tiny_run.py OUT BATCH STEPS."""

import sys

import torch
from torch import nn
from torch.utils.data import TensorDataset

from earmark.engine import Trainer, TrainConfig, setup_distributed


def make_data(n: int = 8) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    return TensorDataset(x, x @ torch.randn(6, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g))


def step(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y), {}


def main(out: str, batch: int, steps: int) -> None:
    info = setup_distributed("cpu")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
    config = TrainConfig(run_dir=f"{out}/run{info.rank}", max_steps=steps, batch_size=batch, lr=0.05, progress=False)
    trainer = Trainer(config, model, step, make_data(), dist_info=info)
    trainer.fit()
    torch.save({"weights": model.state_dict(), "loss": trainer.last_metrics["loss"]}, f"{out}/rank{info.rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
