"""One data source for every verb: ``--data`` names a manifest or WebDataset shards, and both answer the same calls.

    data = open_data("shards/")                 # or "clips.csv", "shards/{000000..000099}.tar", "shards.txt"
    train, val, test = data.train_val_test(4, 5)
    dataset = train_dataset(train, 32000, 1.0, batch_size=64, seed=0)   # for the engine's Trainer
    for batch in eval_loader(val, 32000, 1.0, workers=4): ...

Both kinds have ``labels``, ``multi_label``, ``task``, ``source``, ``skipped``, ``ids``, ``len()``, ``fingerprint()``,
``files()`` and ``train_val_test()``. A manifest trains through ``ClipDataset`` (the engine's sampler batches
it and resumes at the exact step); shards through ``ShardStream`` (it yields whole batches, the same number on
every rank, each clip once per epoch; a resumed run replays the interrupted epoch's order).
"""

from __future__ import annotations

import io
import os
from typing import Iterator, Union

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from earmark.audio.datasets_torch import ClipDataset, Items, collate
from earmark.audio.io import decode_audio, load_audio
from earmark.audio.manifest import Clip, Manifest, file_stamps, read_manifest
from earmark.audio.shards import ShardSet, ShardStream, looks_like_shards

__all__ = ["DataSource", "PlannedBatches", "data_identity", "eval_loader", "first_clips", "open_data", "train_dataset"]  # public; audio's package stays torch-free, so they are named here

DataSource = Union[Manifest, ShardSet]


def open_data(spec: str | os.PathLike, kind: str = "auto", skip_bad: bool = False) -> DataSource:
    """A manifest (any format ``read_manifest`` knows) or a set of shards written by ``earmark data shard``.

    ``skip_bad``: bad manifest rows and files that do not decode to finite audio are left out, each logged and listed
    in the manifest's ``skipped`` (every file is decoded once, here).
    """
    if kind in ("auto", "webdataset") and looks_like_shards(spec):
        if skip_bad:
            raise ValueError(f"{spec}: --skip-bad leaves out a manifest's bad files, and shards hold what was packed; repack "
                             "them without the bad files (`earmark data shard MANIFEST OUT --skip-bad`) and drop --skip-bad.")
        return ShardSet.open(spec)
    manifest = read_manifest(spec, kind, skip_bad=skip_bad)
    manifest = manifest.without_bad_files() if skip_bad else manifest
    if not manifest.clips:  # a run over nothing would spin without a step
        raise ValueError(f"{spec}: holds no clips{' left after the bad ones' if manifest.skipped else ''}; pass a manifest, a folder "
                         "of audio or class folders, or shards (`earmark data check DATA` says what it finds).")
    return manifest


def data_identity(data: DataSource) -> dict[str, str]:
    """What a run folder records of its data: the clips and labels, and every file's size and modification time
    (audio replaced under the same names is other data)."""
    return {"clips and labels": data.fingerprint(), "file sizes and modification times": file_stamps(data.files())}


def train_dataset(data: DataSource, sample_rate: int, clip_seconds: float, batch_size: int, seed: int = 0,
                  frame_hop: float | None = None) -> Dataset:
    """Random crops for training: a map-style ``ClipDataset`` for a manifest, a batch-yielding ``ShardStream`` for shards."""
    if isinstance(data, ShardSet):
        return ShardStream(data, Items(data.labels, sample_rate, clip_seconds, frame_hop), batch_size, train=True, seed=seed)
    return ClipDataset(data, sample_rate, clip_seconds, train=True, seed=seed, frame_hop=frame_hop)


def eval_loader(data: DataSource, sample_rate: int, clip_seconds: float, batch_size: int = 32, frame_hop: float | None = None,
                workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """Deterministic centre crops of every clip, in batches (with frame targets when ``frame_hop`` is given)."""
    options = dict(num_workers=workers, pin_memory=pin_memory)
    if isinstance(data, ShardSet):
        stream = ShardStream(data, Items(data.labels, sample_rate, clip_seconds, frame_hop), batch_size)
        return DataLoader(stream, batch_size=None, **options)
    return DataLoader(ClipDataset(data, sample_rate, clip_seconds, frame_hop=frame_hop), batch_size=batch_size,
                      collate_fn=collate, **options)


def first_clips(data: DataSource, sample_rate: int, limit: int) -> list[tuple[Clip, np.ndarray]]:
    """The first ``limit`` clips, whole, decoded at ``sample_rate`` (calibration and parity sets)."""
    if isinstance(data, ShardSet):
        order = list(range(len(data.shards)))
        return [(clip, decode_audio(io.BytesIO(audio), sample_rate, name=f"{data.shards[shard].url} ({clip.id})"))
                for (shard, _), clip, audio in data.samples(order, 0, min(limit, len(data)))]
    return [(clip, load_audio(clip.path, sample_rate)) for clip in data.clips[:limit]]


class _PlanSampler(Sampler):
    """Batches of manifest positions: round ``i`` yields the (start, end) ranges of ``plans[i]``."""

    def __init__(self, plans: list[list[tuple[int, int]]]):
        self.plans, self.round = plans, 0

    def __iter__(self):
        return iter([list(range(start, end)) for start, end in self.plans[self.round]])

    def __len__(self) -> int:
        return len(self.plans[self.round])


class PlannedBatches:
    """Deterministic centre crops in batches fixed in advance: ``batches(i)`` yields the (start, end) position ranges of
    ``plans[i]`` (positions in ``data.ids`` order); DataLoader workers persist from one round to the next."""

    def __init__(self, data: DataSource, sample_rate: int, clip_seconds: float, plans: list[list[tuple[int, int]]],
                 workers: int = 0, pin_memory: bool = False):
        options = dict(num_workers=workers, persistent_workers=workers > 0, pin_memory=pin_memory)
        if isinstance(data, ShardSet):
            self.control = ShardStream(data, Items(data.labels, sample_rate, clip_seconds), 0, plans=plans)
            self.loader = DataLoader(self.control, batch_size=None, **options)
        else:
            self.control = _PlanSampler(plans)
            dataset = ClipDataset(data, sample_rate, clip_seconds, keep_decoded=False)  # one pass: nothing to keep
            self.loader = DataLoader(dataset, batch_sampler=self.control, collate_fn=collate, **options)

    def batches(self, round: int) -> Iterator[dict]:
        if isinstance(self.control, ShardStream):
            self.control.set_epoch(round)
        else:
            self.control.round = round
        return iter(self.loader)
