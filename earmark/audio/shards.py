"""WebDataset tar shards for corpora that do not fit on one machine: write from a manifest, stream per rank and worker."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from earmark.audio.datasets_torch import fit_length
from earmark.audio.labels import LabelSet
from earmark.audio.manifest import Manifest


def write_shards(manifest: Manifest, out_dir: str | os.PathLike, clips_per_shard: int = 1000) -> list[Path]:
    """Write ``shard-000000.tar``... holding each clip's FLAC and a JSON of its labels and events."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(out_dir / "shard-%06d.tar"), maxcount=clips_per_shard, verbose=0) as sink:
        for clip in manifest.clips:
            data, rate = sf.read(str(clip.path), dtype="float32")
            buffer = io.BytesIO()
            sf.write(buffer, data, rate, format="FLAC")
            info = {"id": clip.id, "labels": list(clip.labels), "events": [list(e) for e in clip.events], "label_set": manifest.labels.to_list()}
            sink.write({"__key__": clip.id.replace("/", "_").replace(".", "_"), "flac": buffer.getvalue(), "json": json.dumps(info).encode()})
    return sorted(out_dir.glob("shard-*.tar"))


class ShardDataset(IterableDataset):
    """Streams (id, wave, target) from shards; shard ``i`` goes to the (rank, worker) with ``i % total == slot``."""

    def __init__(self, shards: list[str | os.PathLike], labels: LabelSet, sample_rate: int, clip_seconds: float,
                 rank: int = 0, world_size: int = 1, train: bool = False, seed: int = 0):
        self.shards, self.labels, self.sample_rate = [str(s) for s in shards], labels, sample_rate
        self.length = int(round(clip_seconds * sample_rate))
        self.rank, self.world_size, self.train, self.seed, self.epoch = rank, world_size, train, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _my_shards(self) -> list[str]:
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        slot, total = self.rank * workers + worker_id, self.world_size * workers
        return self.shards[slot::total]

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch, self.rank)) if self.train else None
        for sample in wds.WebDataset(self._my_shards(), shardshuffle=False, empty_check=False):
            info = json.loads(sample["json"])
            data, rate = sf.read(io.BytesIO(sample["flac"]), dtype="float32", always_2d=True)
            wave = data.mean(axis=1)
            if rate != self.sample_rate:
                import soxr

                wave = soxr.resample(wave, rate, self.sample_rate).astype(np.float32)
            wave, _ = fit_length(wave, self.length, rng)
            target = torch.zeros(len(self.labels))
            for label in info["labels"]:
                target[self.labels.index(label)] = 1.0
            yield {"id": info["id"], "wave": torch.from_numpy(np.ascontiguousarray(wave)), "target": target}
