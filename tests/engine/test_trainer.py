"""The shared loop: exact resume, accumulation, DDP on two CPU ranks, schedules, EMA."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from earmark.engine import EMA, Trainer, TrainConfig, lr_factor

HERE = Path(__file__).parent


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 5, generator=g)
    return TensorDataset(x, (x.sum(1, keepdim=True) > 0).float())


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))


def _step(model, batch):
    x, y = batch
    x = x + 0.05 * torch.randn_like(x)  # consumes the global RNG, as augmentations do
    return nn.functional.binary_cross_entropy_with_logits(model(x), y), {}


class Stop(Exception):
    pass


def _stop_at(step):
    def hook(trainer):
        if trainer.state.step == step:
            raise Stop
    return hook


def test_killed_and_resumed_run_equals_uninterrupted(tmp_path):
    config = lambda d: TrainConfig(run_dir=str(tmp_path / d), epochs=3, batch_size=8, lr=0.01, ckpt_every=1,
                                   warmup_steps=2, schedule="cosine", progress=False)
    full = _model()
    Trainer(config("a"), full, _step, _data()).fit()
    killed = _model()
    with pytest.raises(Stop):
        Trainer(config("b"), killed, _step, _data(), hooks=[_stop_at(7)]).fit()
    resumed = _model()
    state = Trainer(config("b"), resumed, _step, _data()).fit(resume=True)
    assert state.step == 15 and state.epoch == 3
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert not any(torch.equal(a, b) for a, b in zip(full.parameters(), killed.parameters()))


def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    def det_step(model, batch):
        x, y = batch
        return nn.functional.mse_loss(model(x), y), {}

    data = _data()
    make = lambda: nn.Linear(5, 1)
    torch.manual_seed(0); big = make()
    torch.manual_seed(0); small = make()
    base = dict(max_steps=1, lr=0.1, optimizer="adam", schedule="constant", progress=False)
    Trainer(TrainConfig(run_dir=str(tmp_path / "big"), batch_size=40, **base), big, det_step, data).fit()
    Trainer(TrainConfig(run_dir=str(tmp_path / "acc"), batch_size=10, grad_accum=4, **base), small, det_step, data).fit()
    # Same samples: the loader's order is a permutation, and the accumulated mean gradient equals the full one.
    for a, b in zip(big.parameters(), small.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_two_cpu_ranks_under_torchrun_match_one_process(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29531",
           str(HERE / "tiny_run.py"), str(tmp_path / "ddp"), "4", "5"]
    (tmp_path / "ddp").mkdir()
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    subprocess.run([sys.executable, str(HERE / "tiny_run.py"), str(tmp_path / "one"), "8", "5"], check=True, timeout=120)
    r0, r1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in (0, 1))
    single = torch.load(tmp_path / "one" / "rank0.pt")
    for k in r0["weights"]:
        assert torch.equal(r0["weights"][k], r1["weights"][k])
        assert torch.allclose(r0["weights"][k], single["weights"][k], atol=1e-5)
    assert abs((r0["loss"] + r1["loss"]) / 2 - single["loss"]) < 1e-4


def test_schedules():
    assert lr_factor(0, 100, warmup=10) == pytest.approx(0.1)
    assert lr_factor(10, 100, warmup=10) == pytest.approx(1.0)
    assert lr_factor(100, 100, warmup=10) == pytest.approx(0.0, abs=1e-9)
    restarts = [lr_factor(s, 1000, kind="cosine_restarts", restart_period=10) for s in (0, 9, 10, 29, 30)]
    assert restarts[0] == 1.0 and restarts[1] < 0.05 and restarts[2] == 1.0 and restarts[3] < 0.05 and restarts[4] == 1.0


def test_ema_momentum_rises_to_one_and_tracks():
    student = nn.Linear(2, 2)
    ema = EMA(student, start=0.9, end=1.0, total_steps=10)
    assert ema.momentum(0) == pytest.approx(0.9) and ema.momentum(10) == pytest.approx(1.0)
    with torch.no_grad():
        student.weight.add_(1.0)
    before = ema.model.weight.clone()
    ema.update(student, 0)
    assert torch.allclose(ema.model.weight, 0.9 * before + 0.1 * student.weight)


def test_two_ranks_with_workers_see_every_shard_clip_once_per_epoch(tmp_path):
    import json

    from earmark.audio.sources import open_data
    from earmark.audio.synth import synthesize
    from earmark.cli import main

    data = synthesize(tmp_path / "data", seed=5, clips_per_class=3, soundscapes=1)  # 24 clips, 5 folds: uneven shards
    assert main(["data", "shard", str(data.clips_csv), str(tmp_path / "shards"), "--clips-per-shard", "4"]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29543",
           str(HERE / "shard_run.py"), str(tmp_path / "shards"), str(tmp_path), "2", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    ids = sorted(open_data(tmp_path / "shards").ids)
    for epoch in range(2):
        assert sorted(ranks[0]["epochs"][epoch] + ranks[1]["epochs"][epoch]) == ids  # once per epoch, across ranks and workers
    assert ranks[0]["epochs"][0] != ranks[0]["epochs"][1]  # a new order each epoch
    assert ranks[0]["steps"] == ranks[1]["steps"] == 2 * 4 and ranks[0]["weights"] == ranks[1]["weights"]  # DDP in lockstep


def test_a_run_on_shards_resumed_after_a_kill_equals_an_uninterrupted_one(tmp_path):
    from earmark.audio.datasets_torch import collate
    from earmark.audio.sources import open_data, train_dataset
    from earmark.audio.synth import synthesize
    from earmark.cli import main

    data = synthesize(tmp_path / "data", seed=6, clips_per_class=2, soundscapes=1)
    assert main(["data", "shard", str(data.clips_csv), str(tmp_path / "shards"), "--clips-per-shard", "3"]) == 0
    shards = open_data(tmp_path / "shards")

    def step(model, batch):
        x = batch["wave"].reshape(len(batch["id"]), 5, -1).std(dim=2)  # 5 band-free features of the random crops
        return nn.functional.mse_loss(model(x + 0.05 * torch.randn_like(x)), batch["target"][:, :1]), {}

    def run(folder, hooks=(), resume=False):
        model = _model()
        config = TrainConfig(run_dir=str(tmp_path / folder), epochs=3, batch_size=4, lr=0.01, ckpt_every=1, num_workers=1, progress=False)
        trainer = Trainer(config, model, step, train_dataset(shards, 8000, 0.5, 4, seed=2), collate_fn=collate, hooks=list(hooks))
        return model, trainer.fit(resume=resume)

    full, _ = run("a")
    with pytest.raises(Stop):
        run("b", [_stop_at(6)])  # mid-way through the second epoch (4 steps per epoch)
    resumed, state = run("b", resume=True)
    assert state.step == 12 and state.epoch == 3
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
