"""The teacher-output cache (DESIGN artifact 3): float16 logits per clip id, keyed by teacher, frontend and data.

    cache/index.json        key, ids (row order of the arrays), labels, provenance
    cache/clip_logits.npy   (N, C) float16          cache/frame_logits.npy  (N, T, C) float16 (optional)
    cache/embeddings.npy    (N, D) float16 (optional)

Rows are found by clip id, never by position in a manifest. A cache whose key differs from the one
expected (another teacher, frontend, crop length or manifest) is refused with the command to rebuild it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

INDEX = "index.json"
ARRAYS = ("clip_logits", "frame_logits", "embeddings")


def cache_key(teacher_hashes: Iterable[str], frontend_json: str, manifest_fingerprint: str, clip_seconds: float) -> str:
    """The identity of a cache: which teachers (order-free), on which features, over which clips and crop."""
    blob = json.dumps({"teachers": sorted(teacher_hashes), "frontend": frontend_json,
                       "manifest": manifest_fingerprint, "clip_seconds": clip_seconds}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def write_cache(path: str | os.PathLike, key: str, ids: list[str], labels: list[str], arrays: dict[str, np.ndarray],
                provenance: dict | None = None) -> Path:
    """Write a cache folder atomically; ``arrays`` holds clip_logits and optionally frame_logits / embeddings."""
    path = Path(path)
    if len(set(ids)) != len(ids):
        raise ValueError("teacher outputs repeat clip ids; the manifest must have unique ids.")
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, array in arrays.items():
        if name not in ARRAYS or len(array) != len(ids):
            raise ValueError(f"cache array {name!r} must be one of {ARRAYS} with one row per clip id.")
        np.save(tmp / f"{name}.npy", array.astype(np.float16))
    (tmp / INDEX).write_text(json.dumps({"key": key, "ids": ids, "labels": labels, "arrays": sorted(arrays),
                                         "provenance": provenance or {}}, indent=1))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def check_labels(teacher_labels: list[str], manifest, source: str) -> None:
    """Refuse teacher outputs (a checkpoint's or a cache's) made for another label set than ``manifest``'s."""
    if list(teacher_labels) != manifest.labels.to_list():
        raise ValueError(f"{source} was trained on labels {list(teacher_labels)} but the data has {manifest.labels.to_list()}; "
                         "fine-tune the teacher on this label set first (`earmark finetune`).")


class TeacherCache:
    """Memory-mapped teacher outputs looked up by clip id."""

    def __init__(self, path: Path, index: dict):
        self.path, self.key, self.labels = path, index["key"], index["labels"]
        self.rows = {clip_id: i for i, clip_id in enumerate(index["ids"])}
        self.provenance = index.get("provenance", {})
        self.arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in index["arrays"]}

    @classmethod
    def open(cls, path: str | os.PathLike, expect_key: str | None = None, rebuild_hint: str = "") -> "TeacherCache":
        """Open a cache; a missing folder or a key other than ``expect_key`` is refused with how to rebuild it."""
        path = Path(path)
        hint = rebuild_hint or "rebuild it with `earmark predict TEACHER --data MANIFEST --out CACHE`"
        if not (path / INDEX).is_file():
            raise FileNotFoundError(f"{path}: no teacher-output cache here; {hint}.")
        index = json.loads((path / INDEX).read_text())
        if expect_key is not None and index["key"] != expect_key:
            raise ValueError(f"{path}: this teacher-output cache was made for another teacher, frontend or dataset "
                             f"(key {index['key'][:12]}, expected {expect_key[:12]}); {hint}.")
        return cls(path, index)

    def has(self, name: str) -> bool:
        return name in self.arrays

    def lookup(self, ids: list[str], name: str = "clip_logits") -> np.ndarray:
        """Rows of ``name`` for ``ids`` as float32; missing ids are named in the error."""
        missing = [i for i in ids if i not in self.rows]
        if missing:
            raise ValueError(f"{self.path}: the teacher-output cache lacks clips {missing[:5]}"
                             f"{' and more' if len(missing) > 5 else ''}; rebuild it for this manifest.")
        return np.asarray(self.arrays[name][[self.rows[i] for i in ids]], dtype=np.float32)

    def missing(self, ids: Iterable[str]) -> list[str]:
        return [i for i in ids if i not in self.rows]

    def check_covers(self, manifest, data_name: str) -> None:
        """Refuse a cache that lacks clips of ``manifest`` or was made on another label set."""
        missing = self.missing(c.id for c in manifest.clips)
        if missing:
            raise ValueError(f"{self.path}: the teacher-output cache lacks clips {missing[:5]} of {data_name}; "
                             "rebuild it with `earmark predict TEACHER --data MANIFEST --out CACHE`.")
        check_labels(self.labels, manifest, str(self.path))
