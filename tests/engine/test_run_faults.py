"""What a hostile or unlucky user does to a run: kills mid-write, reruns with other settings, two runs in one folder, NaN."""

import csv
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from earmark.engine import CheckpointMeta, Trainer, TrainConfig, load_checkpoint, read_meta, save_checkpoint, start_run
from earmark.engine.checkpoint import recover

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
META = CheckpointMeta(family="student", model="m", model_args={}, frontend={}, labels=["a", "b"])


def _state(value: float, size: int = 1 << 18) -> dict[str, torch.Tensor]:
    return {"w": torch.full((size,), value), "b": torch.full((3,), value)}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_half_finished_swap_is_finished_on_the_next_open(tmp_path):
    save_checkpoint(tmp_path / "student", _state(1.0), META)
    save_checkpoint(tmp_path / ".student.new", _state(2.0), META)  # a complete new version...
    (tmp_path / "student").rename(tmp_path / ".student.old")  # ...and a kill between the two renames
    assert read_meta(tmp_path / "student").labels == ["a", "b"]
    assert load_checkpoint(tmp_path / "student")[0]["b"][0] == 2.0 and _leftovers(tmp_path) == []
    (tmp_path / "student").rename(tmp_path / ".student.old")  # killed with only the old one renamed away
    recover(tmp_path / "student")
    assert load_checkpoint(tmp_path / "student")[0]["b"][0] == 2.0 and _leftovers(tmp_path) == []


def test_checkpoints_survive_random_kills_and_leave_nothing_behind(tmp_path):
    """SIGKILL a process that keeps overwriting one checkpoint, at random moments: a checkpoint is always there."""
    save_checkpoint(tmp_path / "student", _state(0.0), META)
    writer = subprocess.Popen([sys.executable, str(HERE / "checkpoint_writer.py"), str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    rng, advanced = random.Random(0), 0
    try:
        for attempt in range(1, 41):
            writer.stdin.write(f"{attempt}\n")
            writer.stdin.flush()
            pid = int(writer.stdout.readline())
            time.sleep(rng.uniform(0.02, 0.2))
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.005)
            state, meta = load_checkpoint(tmp_path / "student")  # recovers an interrupted swap
            assert meta.labels == ["a", "b"] and torch.equal(state["w"][:3], state["b"]), f"kill {attempt}"
            advanced += int(state["b"][0] >= attempt * 10_000)
    finally:
        writer.kill()
        writer.wait()
    assert advanced >= 10  # most kills landed after the child had written (it was not stuck)
    save_checkpoint(tmp_path / "student", _state(1.0), META)
    assert _leftovers(tmp_path) == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_checkpoint_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "student", _state(1.0, 4), META)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert stat.S_IMODE((path / "earmark.json").stat().st_mode) == 0o644


@dataclass
class RunConfig:
    out: str
    student: str = "tfsepnet16"
    lr: float = 0.004
    seed: int = 0
    progress: bool = True


def test_a_run_folder_resumes_only_its_own_run(tmp_path):
    start_run(RunConfig(str(tmp_path)), "data-1")
    (tmp_path / "float").mkdir()
    (tmp_path / "float" / "state.pt").write_bytes(b"state")
    start_run(RunConfig(str(tmp_path), progress=False), "data-1")  # the same run: resumes
    for other, data in [(RunConfig(str(tmp_path), lr=0.1, seed=7), "data-1"), (RunConfig(str(tmp_path)), "data-2"),
                        (RunConfig(str(tmp_path), student="vit_micro_audio"), "data-1")]:
        with pytest.raises(ValueError, match="holds another run .*; pass --force to start over there, or another --out"):
            start_run(other, data)
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 0.004  # the record is not rewritten
    start_run(RunConfig(str(tmp_path), lr=0.1), "data-1", force=True)
    assert not (tmp_path / "float").exists() and json.loads((tmp_path / "config.json").read_text())["lr"] == 0.1


def test_two_processes_in_one_run_folder_get_one_sentence(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom earmark.engine.trainer import lock_run\n"
                               "from pathlib import Path\nlock_run(Path(sys.argv[1])); print('locked', flush=True); time.sleep(60)",
                               str(tmp_path)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=rf"in use by another earmark run \(process {holder.pid}\); wait for it"):
            start_run(RunConfig(str(tmp_path)), "data-1")
    finally:
        holder.kill()
        holder.wait()
    start_run(RunConfig(str(tmp_path)), "data-1")  # the lock went with its process


class Clips(Dataset):
    """Clips with ids; one of them is NaN, as a broken WAV would be."""

    def __init__(self, bad: int | None = None):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(16, 4, generator=g)
        if bad is not None:
            self.x[bad, 0] = float("nan")

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"id": f"clip{i}", "x": self.x[i], "y": (self.x[i].sum() > 0).float().view(1)}


def _collate(items):
    return {"id": [i["id"] for i in items], "x": torch.stack([i["x"] for i in items]), "y": torch.stack([i["y"] for i in items])}


def _step(model, batch):
    return nn.functional.binary_cross_entropy_with_logits(model(batch["x"]), batch["y"]), {"acc": 0.5}


def test_a_non_finite_loss_stops_training_naming_the_step_and_clips(tmp_path):
    config = TrainConfig(run_dir=str(tmp_path), epochs=2, batch_size=4, progress=False)
    with pytest.raises(ValueError, match=r"the loss became nan at step \d+ \(epoch 0, batch \d, clips \[.*'clip5'.*\]\)"):
        Trainer(config, nn.Linear(4, 1), _step, Clips(bad=5), collate_fn=_collate).fit()


class Stop(Exception):
    pass


def _metric_rows(path: Path) -> list[tuple]:
    with open(path) as f:
        return [tuple(r[:4]) for r in list(csv.reader(f))[1:]]


@pytest.mark.parametrize("ckpt_every, stop", [(3, 11), (0, 11), (3, 2)])  # (3, 2): killed before the first saved state
def test_metrics_rows_are_not_repeated_after_a_resume(tmp_path, ckpt_every, stop):
    def stop_at(trainer):
        if trainer.state.step == stop:
            raise Stop

    config = lambda d: TrainConfig(run_dir=str(tmp_path / d), epochs=4, batch_size=4, ckpt_every=ckpt_every, progress=False)
    val = lambda model: {"score": 1.0}
    Trainer(config("a"), nn.Linear(4, 1), _step, Clips(), collate_fn=_collate, val_fn=val).fit()
    with pytest.raises(Stop):
        Trainer(config("b"), nn.Linear(4, 1), _step, Clips(), collate_fn=_collate, val_fn=val, hooks=[stop_at]).fit()
    Trainer(config("b"), nn.Linear(4, 1), _step, Clips(), collate_fn=_collate, val_fn=val).fit(resume=True)
    resumed, full = _metric_rows(tmp_path / "b" / "metrics.csv"), _metric_rows(tmp_path / "a" / "metrics.csv")
    assert len(resumed) == len(set(resumed)) and resumed == full
