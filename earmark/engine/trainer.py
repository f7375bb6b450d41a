"""The one training loop every run shares (pretrain, finetune, distill); it knows no model.

``step_fn(model, batch) -> (loss, metrics)`` defines the run. ``train_data`` is a map-style dataset (the trainer
samples and batches it, split across ranks) or an IterableDataset that yields whole batches, the same number on
every rank. DataLoader workers persist across epochs, so a dataset's ``set_epoch`` must reach them through shared
memory (``earmark.audio.datasets_torch.EpochCounter``), not a plain attribute. The trainer adds DDP, autocast,
gradient accumulation, the schedule, hooks (EMA updates), a progress bar, metrics CSV and curves,
validation with best-model selection, and atomic state files that resume exactly: the data order
of an epoch depends only on (seed, epoch), and the RNG states are saved with the weights.
"""

from __future__ import annotations

import csv
import fcntl
import itertools
import json
import logging
import os
import random
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, Sampler
from tqdm import tqdm

from earmark.engine.distributed import DistInfo, all_reduce_mean, setup_distributed
from earmark.engine.official import safe_load
from earmark.engine.schedules import lr_factor

StepFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, float]]]
STATE_FILE = "state.pt"
log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything a run's optimisation needs; saved as JSON beside the run."""

    run_dir: str
    epochs: int = 1
    max_steps: int = 0  # 0: epochs decide
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"  # adam | adamw
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | linear | constant | cosine_restarts
    restart_period: int = 0  # cosine_restarts: first period in steps
    min_lr_factor: float = 0.0
    grad_accum: int = 1
    precision: str = "fp32"  # fp32 | bf16 | fp16
    grad_clip: float = 0.0
    seed: int = 0
    ckpt_every: int = 0  # steps; 0: at the end of each epoch
    keep_best: str = ""  # validation metric that picks the best model
    best_mode: str = "max"
    num_workers: int = 0
    find_unused: bool = False  # DDP: parameters may go without gradients in a step (multi-phase recipes)
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainState:
    """Where the run is: the position in the data and the best validation value so far."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of the current epoch already consumed
    best: float | None = None


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"python": random.getstate(), "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def progress_interval() -> float:
    """Seconds between progress-bar redraws: smooth on a terminal, sparse in a log file."""
    return 0.1 if sys.stderr.isatty() else 10.0


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class RunFolderError(ValueError):
    """The run folder belongs to another run, or another process is using it."""


class NonFiniteLoss(ValueError):
    """The loss became NaN or infinite; training stopped."""


_RUN_LOCKS: dict[Path, int] = {}  # run folder -> open lock file, held until the process exits
_NOT_IDENTITY = ("out", "progress", "workers", "skip_bad")  # config fields that do not change what a run computes (what
# --skip-bad leaves out is in the data's identity)
SKIPPED_FILE = "skipped.txt"


def start_run(config: Any, data_identity: str | dict[str, str] = "", force: bool = False, skipped: list[str] = ()) -> Path:
    """Lock ``config.out``, check that it holds this run (or none), record config.json and seed every RNG.

    A folder is resumed only by the same run: its model, data (``data_identity``: a fingerprint, or named parts such
    as the clips and the files' sizes and times), objective, seeds and hyper-parameters. Anything else is refused in
    one sentence unless ``force`` clears the old run's state; a folder with no state to resume from is simply taken.
    ``skipped`` (what the data left out, one sentence each) is written to ``OUT/skipped.txt`` and counted in the log.
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("RANK", "0")) == 0:  # rank 0 speaks for a torchrun job
        lock_run(out)
        identity = json.loads(json.dumps({"config": {k: v for k, v in asdict(config).items() if k not in _NOT_IDENTITY},
                                          "data": data_identity}))
        record = out / "run.json"
        if record.is_file():
            previous = json.loads(record.read_text())
            if previous != identity:
                if not force and any((folder / STATE_FILE).exists() for folder in _trainer_folders(out)):  # else nothing to lose
                    raise RunFolderError(f"{out} holds another run ({_difference(previous, identity)}); pass --force to start "
                                         "over there, or another --out.")
                _clear_run(out)
        record.write_text(json.dumps(identity, indent=2))
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
        (out / SKIPPED_FILE).unlink(missing_ok=True)
        if skipped:
            (out / SKIPPED_FILE).write_text("".join(f"{line}\n" for line in skipped))
            log.warning("the data left out %d bad rows or files (each named above; listed in %s)", len(skipped), out / SKIPPED_FILE)
    seed_everything(config.seed)
    return out


def default_workers() -> int:
    """DataLoader workers per process: the CPUs this process may use, shared among the node's ranks, less one for it."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(min(cpus // int(os.environ.get("LOCAL_WORLD_SIZE", "1")) - 1, 8), 0)


def seed_worker(worker_id: int) -> None:
    """Seed a DataLoader worker's Python and numpy RNGs from the seed torch gave it (base seed + worker id)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


class EpochSampler(Sampler):
    """An epoch's order for this rank (a seeded permutation, split across ranks as DistributedSampler does), from a position on."""

    def __init__(self, size: int, seed: int, dist: DistInfo):
        self.size, self.seed, self.dist = size, seed, dist
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _order(self) -> list[int]:
        if self.dist.distributed:
            sampler = DistributedSampler(range(self.size), self.dist.world_size, self.dist.rank, shuffle=True, seed=self.seed)
            sampler.set_epoch(self.epoch)
            return list(sampler)
        return torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)).tolist()

    def __iter__(self):
        return iter(self._order()[self.skip:])

    def __len__(self) -> int:
        per_rank = -(-self.size // self.dist.world_size) if self.dist.distributed else self.size
        return max(per_rank - self.skip, 0)


def lock_run(folder: Path) -> None:
    """Hold an advisory lock on ``folder`` for this process's lifetime; a second process is refused in one sentence."""
    folder = folder.resolve()
    if folder in _RUN_LOCKS:
        return
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunFolderError(f"{folder} is in use by another earmark run (process {holder}); wait for it to finish, "
                             "or pass another --out.") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _RUN_LOCKS[folder] = fd


def _difference(previous: dict, current: dict) -> str:
    """The settings two runs differ in, as 'name: old -> new'; for the data, which part of it changed."""
    old_data, new_data = previous.get("data"), current.get("data")
    changes = []
    if old_data != new_data:
        parts = ([k for k in new_data if old_data.get(k) != new_data[k]]
                 if isinstance(old_data, dict) and isinstance(new_data, dict) and set(old_data) == set(new_data) else [])
        changes.append(f"the data changed ({', '.join(parts)})" if parts else "the data changed")
    old, new = previous.get("config", {}), current["config"]
    changes += [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(changes[:4]) + (" and more" if len(changes) > 4 else "")


def _trainer_folders(out: Path) -> list[Path]:
    """What a run left here to resume from: its trainer folders (with their state or metrics)."""
    return [child for child in out.iterdir() if child.is_dir() and ((child / STATE_FILE).exists() or (child / "metrics.csv").exists())]


def _clear_run(out: Path) -> None:
    """Remove what a previous run left to resume from."""
    for folder in _trainer_folders(out):
        shutil.rmtree(folder)


class Trainer:
    """Runs ``step_fn`` over ``train_data`` under ``config``; ``fit(resume=True)`` continues a killed run exactly."""

    def __init__(self, config: TrainConfig, model: nn.Module, step_fn: StepFn, train_data: Dataset,
                 collate_fn: Callable | None = None, val_fn: Callable[[nn.Module], dict[str, float]] | None = None,
                 on_best: Callable[[nn.Module, dict[str, float]], None] | None = None,
                 hooks: list[Callable[["Trainer"], None]] | None = None, params: list | None = None,
                 dist_info: DistInfo | None = None, extra_state: dict[str, Any] | None = None):
        self.config, self.step_fn, self.val_fn, self.on_best = config, step_fn, val_fn, on_best
        self.hooks = hooks or []
        self.extra_state = extra_state or {}  # objects with state_dict/load_state_dict saved alongside (EMA, loss centres)
        self.dist = dist_info or setup_distributed()
        self.run_dir = Path(config.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(config.seed)
        self.model = model.to(self.dist.device)
        self.wrapped = (DistributedDataParallel(self.model, find_unused_parameters=config.find_unused)
                        if self.dist.distributed else self.model)
        trainable = params if params is not None else [p for p in self.model.parameters() if p.requires_grad]
        opt_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(trainable, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)
        self.train_data, self.collate_fn = train_data, collate_fn
        self.loader = self._make_loader()
        self.steps_per_epoch = max(len(self.loader) // config.grad_accum, 1)  # a partial accumulation is dropped
        self.total_steps = config.max_steps or self.steps_per_epoch * config.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(
            s, self.total_steps, config.warmup_steps, config.schedule, config.min_lr_factor, config.restart_period))
        self.scaler = torch.amp.GradScaler(enabled=config.precision == "fp16" and self.dist.device.type == "cuda")
        self.state = TrainState()
        self.last_metrics: dict[str, float] = {}

    # data -----------------------------------------------------------------
    def _make_loader(self) -> DataLoader:
        """One loader for the whole run (workers persist across epochs); ``_epoch_batches`` moves it to an epoch."""
        data, cfg = self.train_data, self.config
        options = dict(num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0, worker_init_fn=seed_worker,
                       pin_memory=self.dist.device.type == "cuda",
                       generator=torch.Generator().manual_seed(cfg.seed * 7919))  # keeps the global RNG untouched (exact resume)
        if isinstance(data, IterableDataset):  # a stream yields whole batches, the same number on every rank
            return DataLoader(data, batch_size=None, **options)
        self.sampler = EpochSampler(len(data), cfg.seed, self.dist)
        return DataLoader(data, batch_size=cfg.batch_size, sampler=self.sampler, collate_fn=self.collate_fn, drop_last=False, **options)

    def _epoch_batches(self, epoch: int, skip: int) -> tuple[Any, int]:
        """The epoch's batches from batch ``skip`` on, and the index of the first: a sampler skips without loading,
        a stream replays the epoch (its order is fixed by (seed, epoch)) and drops what was consumed."""
        if hasattr(self.train_data, "set_epoch"):
            self.train_data.set_epoch(epoch)
        if isinstance(self.train_data, IterableDataset):
            return itertools.islice(self.loader, skip, None), skip
        self.sampler.set_epoch(epoch, skip * self.config.batch_size)
        return self.loader, skip

    def _to_device(self, batch: Any) -> Any:
        if isinstance(batch, torch.Tensor):
            return batch.to(self.dist.device, non_blocking=True)
        if isinstance(batch, dict):
            return {k: self._to_device(v) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self._to_device(v) for v in batch)
        return batch

    # state ----------------------------------------------------------------
    def save_state(self) -> Path:
        """Write the full training state atomically (rank 0)."""
        path = self.run_dir / STATE_FILE
        if not self.dist.is_main:
            return path
        payload = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": _rng_state(), "train_state": asdict(self.state),
            "extra": {k: v.state_dict() for k, v in self.extra_state.items()},
        }
        tmp = path.with_suffix(".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        return path

    def load_state(self) -> bool:
        """Restore the saved state if the run folder has one; True when resumed."""
        path = self.run_dir / STATE_FILE
        if not path.exists():
            return False
        payload = safe_load(path, self.dist.device)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        for key, obj in self.extra_state.items():
            obj.load_state_dict(payload["extra"][key])
        _set_rng_state(payload["rng"])
        self.state = TrainState(**payload["train_state"])
        return True

    # loop -----------------------------------------------------------------
    def _autocast(self):
        cfg, device = self.config, self.dist.device.type
        if cfg.precision == "fp32":
            return torch.autocast(device, enabled=False)
        return torch.autocast(device, dtype=torch.bfloat16 if cfg.precision == "bf16" else torch.float16)

    def _optimizer_step(self) -> None:
        if self.config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.state.step += 1
        for hook in self.hooks:
            hook(self)

    def fit(self, resume: bool = False) -> TrainState:
        """Train until ``max_steps`` or ``epochs``; returns the final state."""
        cfg = self.config
        resumed = resume and self.load_state()
        if resumed and self.dist.is_main:
            self._forget_metrics_after_state()
            log.info("resumed %s at step %d (epoch %d, batch %d)", self.run_dir, self.state.step, self.state.epoch, self.state.batch)
        elif self.dist.is_main:  # a fresh start, or a run killed before its first saved state: its rows go too
            (self.run_dir / "metrics.csv").unlink(missing_ok=True)
        bar = tqdm(total=self.total_steps, initial=self.state.step, desc=self.run_dir.name, mininterval=progress_interval(),
                   disable=not (cfg.progress and self.dist.is_main), dynamic_ncols=True)
        self.wrapped.train()
        while self.state.step < self.total_steps:
            self._run_epoch(bar)
        bar.close()
        self.save_state()
        return self.state

    def _run_epoch(self, bar: tqdm) -> None:
        cfg = self.config
        accumulated = 0
        self.optimizer.zero_grad(set_to_none=True)
        batches, first = self._epoch_batches(self.state.epoch, self.state.batch)  # skips what was consumed before a stop
        for index, batch in enumerate(batches, start=first):
            with self._autocast():
                loss, metrics = self.step_fn(self.wrapped, self._to_device(batch))
            if not torch.isfinite(loss.detach()).all():
                ids = batch.get("id") if isinstance(batch, dict) else None
                raise NonFiniteLoss(
                    f"{self.run_dir}: the loss became {float(loss.detach())} at step {self.state.step + 1} (epoch {self.state.epoch}, "
                    f"batch {index}{f', clips {ids}' if ids else ''}); training stopped. Look for NaN/inf audio with "
                    "`earmark data check MANIFEST`, or lower --lr.")
            self.scaler.scale(loss / cfg.grad_accum).backward()
            accumulated += 1
            self.state.batch = index + 1
            if accumulated % cfg.grad_accum:
                continue
            self._optimizer_step()
            self.last_metrics = {"loss": float(loss.detach()), **{k: float(v) for k, v in metrics.items()}}
            bar.update(1)
            bar.set_postfix(loss=f"{self.last_metrics['loss']:.4f}")
            self._log("train", {**self.last_metrics, "lr": self.scheduler.get_last_lr()[0]})
            if cfg.ckpt_every and self.state.step % cfg.ckpt_every == 0:
                self.save_state()
            if cfg.max_steps and self.state.step >= self.total_steps:
                return  # a step budget ends mid-epoch; an epoch budget ends with the epoch's validation
        self.state.epoch += 1
        self.state.batch = 0
        self._validate()
        if not cfg.ckpt_every:
            self.save_state()

    def _validate(self) -> None:
        if self.val_fn is None:
            return
        self.model.eval()
        with torch.no_grad(), self._autocast():
            metrics = {k: float(all_reduce_mean(torch.tensor(float(v), device=self.dist.device))) for k, v in self.val_fn(self.model).items()}
        self.model.train()
        self._log("val", metrics)
        key = self.config.keep_best
        if key and key in metrics:
            value, best = metrics[key], self.state.best
            better = best is None or (value > best if self.config.best_mode == "max" else value < best)
            if better:
                self.state.best = value
                if self.on_best and self.dist.is_main:
                    self.on_best(self.model, metrics)

    def _forget_metrics_after_state(self) -> None:
        """Drop metrics rows logged after the saved state: the resumed run logs those steps again."""
        path = self.run_dir / "metrics.csv"
        if not path.exists():
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        saved = (self.state.step, self.state.epoch)
        kept = rows[:1] + [r for r in rows[1:] if (int(r[0]), int(r[1])) <= saved]
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(kept)
        os.replace(tmp, path)

    def _log(self, phase: str, metrics: dict[str, float]) -> None:
        if not self.dist.is_main:
            return
        path = self.run_dir / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "epoch", "phase", "metric", "value"])
            for name, value in metrics.items():
                writer.writerow([self.state.step, self.state.epoch, phase, name, f"{value:.6g}"])
