"""The teacher-output cache (DESIGN artifact 3): float16 outputs per clip id, keyed by teacher, frontend and data.

    cache/index.json                   key, labels, arrays, parts (name, clip count), provenance
    cache/part-000000.json             the ids of the part's rows, in order
    cache/part-000000.clip_logits.npy  (n, C) float16     part-000000.frame_logits.npy  (n, T, C) float16 (optional)
    cache/part-000000.embeddings.npy   (n, D) float16 (optional)
    cache/.lock                        advisory lock: held exclusively while a predict writes, shared while a reader opens

A part holds a fixed range of clips of the data (``part_clips`` of them) whatever the number of ranks that
wrote it, and is written when complete (arrays first, its id list last); a rerun of a killed job keeps the
finished parts of the same key. ``index.json`` appears only when every part is there. Rows are found by clip
id across parts through memory maps, never by position in a manifest. A cache whose key differs from the one
expected (another teacher, frontend, crop length, data, or audio files changed in size or time) is refused
with the command to rebuild it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

INDEX = "index.json"
WRITING = "writing.json"
LOCK = ".lock"
ARRAYS = ("clip_logits", "frame_logits", "embeddings")
FORMAT = "earmark-cache/2"


def cache_key(teacher_hashes: Iterable[str], frontend_json: str, data_fingerprint: str, clip_seconds: float, stamps: str = "") -> str:
    """The identity of a cache: which teachers (order-free), on which features, over which clips, files and crop."""
    blob = json.dumps({"teachers": sorted(teacher_hashes), "frontend": frontend_json, "data": data_fingerprint,
                       "files": stamps, "clip_seconds": clip_seconds}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


ORPHAN_WAIT_SECONDS = 30.0  # how long a lock left to a killed predict's DataLoader workers is waited for


@contextlib.contextmanager
def cache_lock(path: str | os.PathLike, exclusive: bool) -> Iterator[None]:
    """Hold the cache's advisory lock (exclusive: writing; shared: opening); a held lock is refused, not waited on.

    The writer records its process id in the lock file. Its forked DataLoader workers share the lock, and they outlive a
    killed writer by a few seconds; a lock whose recorded writer is gone is therefore waited for (up to
    ``ORPHAN_WAIT_SECONDS``) instead of refused, so a killed predict can be rerun at once.
    """
    path = Path(path)
    if exclusive:
        path.mkdir(parents=True, exist_ok=True)
    elif not (path / LOCK).is_file():  # never written by this version's predict: no writer to wait for
        yield
        return
    with open(path / LOCK, "a+" if exclusive else "r") as handle:
        _acquire(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, path)
        if exclusive:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _acquire(handle, mode: int, path: Path) -> None:
    deadline = None
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            writer = _recorded_writer(path / LOCK)
            if writer is None or _alive(writer):
                raise RuntimeError(f"{path}: another earmark predict is writing this teacher-output cache (its {LOCK} is locked); "
                                   "wait for it to finish, or pass another --out / --cache.") from None
            deadline = deadline or time.monotonic() + ORPHAN_WAIT_SECONDS
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path}: the predict that wrote this cache (process {writer}) is gone, but processes it "
                                   f"started still hold its {LOCK} after {ORPHAN_WAIT_SECONDS:.0f} s; end them (`fuser {path / LOCK}`) "
                                   "and run again.") from None
            time.sleep(0.2)


def _recorded_writer(lock: Path) -> int | None:
    text = lock.read_text().strip() if lock.is_file() else ""
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def part_name(part: int) -> str:
    return f"part-{part:06d}"


class CacheWriter:
    """Writes a cache part by part; parts finished under the same key survive a killed job."""

    def __init__(self, path: str | os.PathLike, key: str, part_clips: int, embeddings: bool = False):
        self.path, self.key, self.part_clips, self.embeddings = Path(path), key, part_clips, embeddings

    def start(self) -> None:
        """Forget parts of another key, part size or set of arrays (one process, holding the lock)."""
        if self.complete():
            return
        progress, plan = self.path / WRITING, {"key": self.key, "part_clips": self.part_clips, "embeddings": self.embeddings}
        if not progress.is_file() or json.loads(progress.read_text()) != plan:
            for stale in [*self.path.glob("part-*"), self.path / INDEX]:
                stale.unlink(missing_ok=True)
            _atomic_write(progress, json.dumps(plan))
        (self.path / INDEX).unlink(missing_ok=True)

    def complete(self) -> bool:
        """True when index.json of this key is there, with embeddings if they are asked for."""
        path = self.path / INDEX
        index = json.loads(path.read_text()) if path.is_file() else {}
        return index.get("key") == self.key and (not self.embeddings or "embeddings" in index.get("arrays", ()))

    def done(self, part: int) -> bool:
        return (self.path / f"{part_name(part)}.json").is_file()

    def write_part(self, part: int, ids: list[str], arrays: dict[str, np.ndarray]) -> None:
        """Arrays (float16) first, the id list last: a part without its id list is not finished."""
        for name, array in arrays.items():
            if name not in ARRAYS or len(array) != len(ids):
                raise ValueError(f"cache array {name!r} must be one of {ARRAYS} with one row per clip id.")
            tmp = self.path / f".{part_name(part)}.{name}.tmp.npy"
            np.save(tmp, array.astype(np.float16))
            os.replace(tmp, self.path / f"{part_name(part)}.{name}.npy")
        _atomic_write(self.path / f"{part_name(part)}.json", json.dumps({"ids": ids}))

    def finish(self, parts: int, labels: list[str], provenance: dict) -> Path:
        """Write index.json once every part is there (one process)."""
        arrays = [f.name.split(".")[1] for f in self.path.glob(f"{part_name(0)}.*.npy")]
        counts = []
        for part in range(parts):
            ids = json.loads((self.path / f"{part_name(part)}.json").read_text())["ids"]
            counts.append({"name": part_name(part), "count": len(ids)})
        _atomic_write(self.path / INDEX, json.dumps({"format": FORMAT, "key": self.key, "labels": labels, "arrays": sorted(arrays),
                                                     "part_clips": self.part_clips, "parts": counts, "provenance": provenance}, indent=1))
        (self.path / WRITING).unlink(missing_ok=True)
        return self.path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _json(path: Path):
    """A cache's JSON file; a damaged one is named."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: is damaged ({err}); delete the cache folder and rebuild it.") from None


def _array(path: Path, rows: int) -> np.ndarray:
    """A memory-mapped cache array with one row per id; a damaged or truncated file is named."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: is damaged or truncated ({err}); delete the cache folder and rebuild it.") from None
    if len(array) != rows:
        raise ValueError(f"{path}: has {len(array)} rows for {rows} clip ids; delete the cache folder and rebuild it.")
    return array


def check_labels(teacher_labels: list[str], manifest, source: str) -> None:
    """Refuse teacher outputs (a checkpoint's or a cache's) made for another label set than ``manifest``'s."""
    if list(teacher_labels) != manifest.labels.to_list():
        raise ValueError(f"{source} was trained on labels {list(teacher_labels)} but the data has {manifest.labels.to_list()}; "
                         "fine-tune the teacher on this label set first (`earmark finetune`).")


class TeacherCache:
    """Memory-mapped teacher outputs looked up by clip id, however many parts hold them."""

    def __init__(self, path: Path, index: dict):
        self.path, self.key, self.labels = path, index["key"], index["labels"]
        self.provenance = index.get("provenance", {})
        self.names = list(index["arrays"])
        self.rows: dict[str, tuple[int, int]] = {}
        self.parts: list[dict[str, np.ndarray]] = []
        for number, part in enumerate(index["parts"]):
            ids = _json(path / f"{part['name']}.json")["ids"]
            self.rows.update((clip_id, (number, row)) for row, clip_id in enumerate(ids))
            self.parts.append({name: _array(path / f"{part['name']}.{name}.npy", len(ids)) for name in self.names})

    @classmethod
    def open(cls, path: str | os.PathLike, expect_key: str | None = None, rebuild_hint: str = "") -> "TeacherCache":
        """Open a cache; a missing folder, one being written, or a key other than ``expect_key`` is refused with how to rebuild it."""
        path = Path(path)
        hint = rebuild_hint or "rebuild it with `earmark predict TEACHER --data DATA --out CACHE`"
        if not (path / INDEX).is_file():
            unfinished = " (a predict into it did not finish: run it again and it continues)" if (path / WRITING).is_file() else ""
            raise FileNotFoundError(f"{path}: no teacher-output cache here{unfinished}; {hint}.")
        with cache_lock(path, exclusive=False):
            index = _json(path / INDEX)
            if not isinstance(index, dict) or index.get("format") != FORMAT:
                found = index.get("format", "earmark-cache/1") if isinstance(index, dict) else "not a cache index"
                raise ValueError(f"{path}: a teacher-output cache of another earmark version ({found}); {hint}.")
            if expect_key is not None and index["key"] != expect_key:
                raise ValueError(f"{path}: this teacher-output cache was made for another teacher, frontend or dataset, or the audio "
                                 f"files changed since (key {index['key'][:12]}, expected {expect_key[:12]}); {hint}.")
            return cls(path, index)

    def has(self, name: str) -> bool:
        return name in self.names

    def row_shape(self, name: str) -> tuple[int, ...]:
        """The shape of one clip's ``name`` (e.g. (C,) for clip logits, (T, C) for frame logits)."""
        return tuple(self.parts[0][name].shape[1:])

    def lookup(self, ids: list[str], name: str = "clip_logits") -> np.ndarray:
        """Rows of ``name`` for ``ids`` as float32; missing ids are named in the error."""
        missing = self.missing(ids)
        if missing:
            raise ValueError(f"{self.path}: the teacher-output cache lacks clips {missing[:5]}"
                             f"{' and more' if len(missing) > 5 else ''}; rebuild it for this data.")
        out = np.empty((len(ids), *self.row_shape(name)), np.float32)
        where = np.array([self.rows[i] for i in ids]).reshape(-1, 2)
        for part in np.unique(where[:, 0]):  # one fancy-indexed read per part the batch touches
            mask = where[:, 0] == part
            out[mask] = self.parts[part][name][where[mask, 1]]
        return out

    def missing(self, ids: Iterable[str]) -> list[str]:
        return [i for i in ids if i not in self.rows]

    def check_covers(self, data, data_name: str) -> None:
        """Refuse a cache that lacks clips of ``data`` (a manifest or shards) or was made on another label set."""
        missing = self.missing(data.ids)
        if missing:
            raise ValueError(f"{self.path}: the teacher-output cache lacks clips {missing[:5]} of {data_name}; "
                             "rebuild it with `earmark predict TEACHER --data DATA --out CACHE`.")
        check_labels(self.labels, data, str(self.path))
