"""WebDataset tar shards for corpora that do not fit on one machine: written from a manifest, streamed per rank and worker.

A shard ``000123.tar`` holds, per clip, the original encoded file (``KEY.wav``, ``KEY.flac``...; never re-encoded)
and ``KEY.json`` with its id, labels, strong labels, fold and scene. ``index.json`` beside the shards records
each shard's clip count, fold and ids, the label set, and the fingerprint of the source manifest; clips are
grouped by fold so that a validation or test split reads only its own shards.
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import webdataset as wds
from braceexpand import braceexpand
from torch.utils.data import IterableDataset, get_worker_info

from earmark.audio.datasets_torch import EpochCounter, Items, collate
from earmark.audio.io import decode_audio, refuse_silence
from earmark.audio.labels import LabelSet
from earmark.audio.manifest import Clip, Manifest, clip_fold

INDEX = "index.json"
FORMAT = "earmark-shards/1"


@dataclass(frozen=True)
class Shard:
    """One tar file of the set and what its index says it holds."""

    url: str
    count: int
    fold: int
    ids: tuple[str, ...]


def _header(clip: Clip, audio_ext: str) -> bytes:
    return json.dumps({"id": clip.id, "labels": list(clip.labels), "events": [list(e) for e in clip.events],
                       "fold": clip_fold(clip), "scene": clip.scene, "audio": audio_ext}).encode()


def write_shards(manifest: Manifest, out_dir: str | os.PathLike, clips_per_shard: int = 1000, max_shard_mb: float = 0.0) -> "ShardSet":
    """Pack the manifest's files into ``OUT/000000.tar``... (one fold per shard) and write ``OUT/index.json``."""
    if clips_per_shard < 1 or max_shard_mb < 0:
        raise ValueError("--clips-per-shard must be at least 1 and --max-shard-mb at least 0 (0: no size limit).")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file, and the shards go into a folder; pass a new or existing folder as OUT.")
    out.mkdir(parents=True, exist_ok=True)
    if (out / INDEX).is_file():  # replacing an older set: its tars go first so that none is left stale
        for entry in json.loads((out / INDEX).read_text()).get("shards", []):
            (out / entry["name"]).unlink(missing_ok=True)
        (out / INDEX).unlink()
    limit = max_shard_mb * 1e6 or math.inf
    entries: list[dict] = []
    writer, stream = None, None
    for position, clip in enumerate(sorted(manifest.clips, key=clip_fold)):
        data = Path(clip.path).read_bytes()
        current = entries[-1] if entries else None
        if (current is None or current["count"] >= clips_per_shard or current["fold"] != clip_fold(clip)
                or (current["count"] and current["bytes"] + len(data) > limit)):
            if writer is not None:
                writer.close()
                stream.close()
            current = {"name": f"{len(entries):06d}.tar", "count": 0, "bytes": 0, "fold": clip_fold(clip), "ids": []}
            entries.append(current)
            stream = open(out / current["name"], "wb")
            writer = wds.TarWriter(stream, encoder=False)
        ext = Path(clip.path).suffix.lower().lstrip(".") or "wav"
        writer.write({"__key__": f"{position:09d}", ext: data, "json": _header(clip, ext)})
        current["count"] += 1
        current["bytes"] += len(data)
        current["ids"].append(clip.id)
    if writer is not None:
        writer.close()
        stream.close()
    index = {"format": FORMAT, "source": manifest.source, "source_fingerprint": manifest.fingerprint(),
             "labels": manifest.labels.to_list(), "multi_label": manifest.multi_label, "task": manifest.task,
             "clips": len(manifest), "shards": entries}
    tmp = out / f".{INDEX}.tmp"
    tmp.write_text(json.dumps(index))
    os.replace(tmp, out / INDEX)
    return ShardSet.open(out)


def looks_like_shards(spec: str | os.PathLike) -> bool:
    """True for a shard folder (with index.json), a ``.tar``, a brace pattern, or a ``.txt`` list of ``.tar`` files."""
    text, path = str(spec), Path(spec)
    if "{" in text or path.suffix == ".tar" or (path.is_dir() and (path / INDEX).is_file()):
        return True
    if path.is_file() and path.suffix == ".txt":
        first = next((line.strip() for line in path.read_text().splitlines() if line.strip()), "")
        return first.endswith(".tar")
    return False


class ShardSet:
    """WebDataset shards written by ``earmark data shard``: the data-source API of a ``Manifest`` (labels, ids, folds)."""

    def __init__(self, shards: list[Shard], labels: LabelSet, multi_label: bool, task: str, source: str, source_fingerprint: str):
        self.shards, self.labels, self.multi_label, self.task = shards, labels, multi_label, task
        self.source, self.source_fingerprint = source, source_fingerprint
        self.skipped: list[str] = []  # shards hold what `earmark data shard` packed; nothing is left out when reading them
        self.offsets = np.concatenate([[0], np.cumsum([s.count for s in shards])]).astype(int)

    @classmethod
    def open(cls, spec: str | os.PathLike) -> "ShardSet":
        """A folder, a brace pattern ``shards/{000000..000999}.tar``, one ``.tar`` or a ``.txt`` list (paths relative to it)."""
        text, path = str(spec), Path(spec)
        if path.is_dir():
            folder, names = path, None
        else:
            if path.suffix == ".txt":
                lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
                files = [Path(line) if Path(line).is_absolute() else path.parent / line for line in lines]
            else:
                files = [Path(p) for p in braceexpand(text)]
            folders = {f.parent for f in files}
            if len(folders) != 1:
                raise ValueError(f"{spec}: the shards lie in {len(folders)} folders; list shards of one `earmark data shard` output.")
            folder, names = folders.pop(), [f.name for f in files]
        if not (folder / INDEX).is_file():
            raise FileNotFoundError(f"{folder}: no {INDEX} beside the shards; write them with `earmark data shard MANIFEST {folder}`.")
        index = json.loads((folder / INDEX).read_text())
        if index.get("format") != FORMAT:
            raise ValueError(f"{folder / INDEX}: not an index of earmark shards ({index.get('format')!r}); re-run `earmark data shard`.")
        by_name = {e["name"]: e for e in index["shards"]}
        unknown = [n for n in names or [] if n not in by_name]
        if unknown:
            raise ValueError(f"{spec}: {unknown[:3]} are not in {folder / INDEX}; list shards of that set only.")
        entries = [by_name[n] for n in names] if names is not None else index["shards"]
        shards = [Shard(str(folder / e["name"]), e["count"], e["fold"], tuple(e["ids"])) for e in entries]
        return cls(shards, LabelSet(index["labels"]), index["multi_label"], index["task"], str(spec), index["source_fingerprint"])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def ids(self) -> list[str]:
        """The clip ids in shard order."""
        return [i for s in self.shards for i in s.ids]

    def files(self) -> list[Path]:
        """The tar files (their sizes and mtimes key the teacher-output cache)."""
        return [Path(s.url) for s in self.shards]

    def fingerprint(self) -> str:
        """The source manifest's fingerprint and the selected shards."""
        return json.dumps({"source": self.source_fingerprint, "shards": [Path(s.url).name for s in self.shards]})

    def train_val_test(self, val_fold: int, test_fold: int) -> tuple["ShardSet", "ShardSet", "ShardSet"]:
        """Train / validation / test by fold (each shard holds one fold, so a split reads only its shards)."""
        if val_fold == test_fold:
            raise ValueError("the validation and test folds must differ: the best checkpoint is chosen on validation, not test.")
        pick = lambda keep: ShardSet([s for s in self.shards if keep(s.fold)], self.labels, self.multi_label, self.task,
                                     self.source, self.source_fingerprint)
        return pick(lambda f: f not in (val_fold, test_fold)), pick(lambda f: f == val_fold), pick(lambda f: f == test_fold)

    def samples(self, order: list[int], start: int, end: int) -> Iterator[tuple[tuple[int, int], Clip, bytes]]:
        """Clips at positions [start, end) of the shards concatenated in ``order``: ((shard, offset), clip, encoded audio)."""
        counts = [self.shards[i].count for i in order]
        first = 0
        for shard_index, count in zip(order, counts):
            lo, hi = max(start - first, 0), min(end - first, count)
            first += count
            if lo >= hi:
                continue
            shard, seen = self.shards[shard_index], 0
            reader = wds.WebDataset([shard.url], shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False)
            try:
                for offset, sample in enumerate(reader):
                    seen = offset + 1
                    if offset < lo:
                        continue
                    info = json.loads(sample["json"])
                    clip = Clip(info["id"], Path(shard.url), tuple(info["labels"]), info["fold"], info["scene"],
                                tuple((float(a), float(b), str(c)) for a, b, c in info["events"]))
                    yield (shard_index, offset), clip, sample[info["audio"]]
                    if offset + 1 >= hi:
                        break
            except tarfile.ReadError as err:
                raise ValueError(f"{shard.url}: unreadable after {seen} clips ({err.args[0].split(' @ ')[0]}); the shard is "
                                 "truncated or damaged: re-run `earmark data shard`.") from None
            if seen < hi:
                raise ValueError(f"{shard.url} holds {seen} clips but its {INDEX} says {shard.count}; "
                                 "the shard is truncated: re-run `earmark data shard`.")


def _batch_sizes(n: int, batches: int) -> list[int]:
    """``n`` clips in ``batches`` batches whose sizes differ by at most one."""
    return [n // batches + (i < n % batches) for i in range(batches)]


class ShardStream(IterableDataset):
    """Collated batches streamed from a ShardSet; every rank yields the same number of batches and every clip once per epoch.

    Training: each epoch shuffles the shard order (seed, epoch), cuts the concatenated clips into one contiguous
    range per rank (sizes differ by at most one), each range into ``len(self)`` batches, and hands each
    DataLoader worker a contiguous run of batches; a worker shuffles its clips through a buffer seeded by
    (seed, epoch, rank, worker). Evaluation reads in order on one rank. ``plans`` fixes the batches instead:
    epoch ``i`` yields the (start, end) position ranges (in shard order) of ``plans[i]``, as the cache writer asks.
    """

    def __init__(self, shards: ShardSet, items: Items, batch_size: int, train: bool = False, seed: int = 0,
                 shuffle_buffer: int = 256, plans: list[list[tuple[int, int]]] | None = None):
        self.shards, self.items, self.batch_size, self.train, self.seed = shards, items, batch_size, train, seed
        self.shuffle_buffer, self.plans = shuffle_buffer, plans
        self.rank, self.world = (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))) if train else (0, 1)
        self.epoch = EpochCounter()
        if plans is None and len(shards) // self.world < len(self):
            raise ValueError(f"{shards.source}: {len(shards)} clips cannot fill {len(self)} batches on each of {self.world} ranks; "
                             "use a smaller --batch-size or fewer ranks.")

    def set_epoch(self, epoch: int) -> None:
        self.epoch.set(epoch)

    def __len__(self) -> int:
        """Batches per rank and epoch."""
        if self.plans is not None:
            return len(self.plans[self.epoch.get()])
        per_rank = -(-len(self.shards) // self.world)
        return max(-(-per_rank // self.batch_size), 1)

    def plan(self, epoch: int) -> tuple[list[int], list[tuple[int, int]]]:
        """This rank's shard order and batches as (start, end) positions in that order."""
        order = list(range(len(self.shards.shards)))
        if self.plans is not None:
            return order, list(self.plans[epoch])
        if self.train:
            order = [int(i) for i in np.random.default_rng((self.seed, epoch)).permutation(len(order))]
        total = len(self.shards)
        start, end = self.rank * total // self.world, (self.rank + 1) * total // self.world
        bounds = np.concatenate([[start], start + np.cumsum(_batch_sizes(end - start, len(self)))])
        return order, list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))

    def __iter__(self) -> Iterator[dict]:
        epoch = self.epoch.get()
        order, batches = self.plan(epoch)
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        mine = batches[worker_id * len(batches) // workers:(worker_id + 1) * len(batches) // workers]
        if not mine:
            return
        shuffle = np.random.default_rng((self.seed, epoch, self.rank, worker_id)) if self.train else None
        stream = self._clips(order, mine, shuffle)
        for start, end in mine:
            yield collate([self._item(next(stream), epoch) for _ in range(end - start)])

    def _clips(self, order: list[int], batches: list[tuple[int, int]], shuffle: np.random.Generator | None) -> Iterator:
        runs = []  # contiguous runs of batches are read in one pass
        for start, end in batches:
            if runs and runs[-1][1] == start:
                runs[-1][1] = end
            else:
                runs.append([start, end])
        clips = (clip for start, end in runs for clip in self.shards.samples(order, start, end))
        if shuffle is None:
            yield from clips
            return
        buffer: list = []
        for clip in clips:  # a shuffle buffer: emit a random element once the buffer is full
            buffer.append(clip)
            if len(buffer) >= self.shuffle_buffer:
                yield buffer.pop(int(shuffle.integers(len(buffer))))
        while buffer:
            yield buffer.pop(int(shuffle.integers(len(buffer))))

    def _item(self, sample: tuple, epoch: int) -> dict:
        (shard, offset), clip, audio = sample
        name = f"{self.shards.shards[shard].url} ({clip.id})"
        wave = refuse_silence(name, decode_audio(io.BytesIO(audio), self.items.sample_rate, name=name))
        rng = np.random.default_rng((self.seed, epoch, shard, offset)) if self.train else None
        return self.items(clip, wave, rng)
