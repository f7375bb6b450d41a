"""Under torchrun: the engine's Trainer on a ShardStream with DataLoader workers; each rank records the clip ids of its steps.

python shard_run.py SHARDS OUT WORKERS EPOCHS  ->  OUT/rank{r}.json: {"epochs": [[ids of epoch 0], ...], "steps": n}
"""

import json
import sys

import torch
from torch import nn

from earmark.audio.datasets_torch import collate
from earmark.audio.sources import open_data, train_dataset
from earmark.engine import Trainer, TrainConfig, setup_distributed


def main(shards: str, out: str, workers: int, epochs: int) -> None:
    info = setup_distributed("cpu")
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    seen: list[list[str]] = [[] for _ in range(epochs)]

    def step(m, batch):
        seen[trainer.state.epoch].extend(batch["id"])
        return (m(batch["wave"].mean(dim=1, keepdim=True)) ** 2).mean(), {}

    data = train_dataset(open_data(shards), 8000, 0.25, batch_size=3, seed=4)
    config = TrainConfig(run_dir=f"{out}/run{info.rank}", epochs=epochs, batch_size=3, lr=0.01, num_workers=workers, progress=False)
    trainer = Trainer(config, model, step, data, collate_fn=collate, dist_info=info)
    trainer.fit()
    with open(f"{out}/rank{info.rank}.json", "w") as f:
        json.dump({"epochs": seen, "steps": trainer.state.step, "weights": model.weight.item()}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
