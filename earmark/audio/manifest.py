"""Dataset manifests: folder per class, ESC-50 CSV, TAU TSV, DESED strong labels, AudioSet-style multi-label CSV.

Every reader returns a ``Manifest`` of ``Clip`` rows. Bad rows stop the read with one error naming the
file and row; ``skip_bad=True`` reports them on stderr and skips them instead. Nothing is dropped silently.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

from earmark.audio.io import SKIP_HINT, check_audio
from earmark.audio.labels import LabelSet

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}


@dataclass(frozen=True)
class Clip:
    """One audio file with its labels; ``events`` are strong labels (onset s, offset s, label)."""

    id: str
    path: Path
    labels: tuple[str, ...] = ()
    fold: int | None = None
    scene: str | None = None
    events: tuple[tuple[float, float, str], ...] = ()


@dataclass
class Manifest:
    """The clips of a dataset, their label set and how they are labelled."""

    clips: list[Clip]
    labels: LabelSet
    multi_label: bool = False
    task: str = "clip"  # "frame" when clips carry strong (onset/offset) labels
    source: str = ""
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.clips)

    def fingerprint(self) -> str:
        """A stable hash of ids, paths, labels and events: caches built from this manifest are keyed by it."""
        rows = [[c.id, str(c.path), list(c.labels), c.fold, c.scene, [list(e) for e in c.events]] for c in self.clips]
        blob = json.dumps({"labels": self.labels.to_list(), "rows": rows}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def filter(self, keep: Callable[[Clip], bool]) -> "Manifest":
        """The clips for which ``keep`` is true (same label set)."""
        return replace(self, clips=[c for c in self.clips if keep(c)], skipped=[])

    def folds(self, folds: Iterable[int]) -> "Manifest":
        """The clips of the given folds."""
        wanted = set(folds)
        return self.filter(lambda c: clip_fold(c) in wanted)

    def train_val_test(self, val_fold: int, test_fold: int) -> tuple["Manifest", "Manifest", "Manifest"]:
        """Train / validation / test by fold; the validation fold is never the test fold.

        Clips without a fold (TAU, DESED, AudioSet lists) get one of 5 from a hash of their id: stable across runs.
        """
        if not self.labels:
            raise ValueError(f"{self.source}: has no labels ({self.describe()}); labelled training needs a CSV/TSV manifest "
                             "or one sub-folder per class.")
        if val_fold == test_fold:
            raise ValueError("the validation and test folds must differ: the best checkpoint is chosen on validation, not test.")
        return (self.filter(lambda c: clip_fold(c) not in (val_fold, test_fold)), self.filter(lambda c: clip_fold(c) == val_fold),
                self.filter(lambda c: clip_fold(c) == test_fold))

    @property
    def ids(self) -> list[str]:
        """The clip ids in manifest order."""
        return [c.id for c in self.clips]

    def files(self) -> list[Path]:
        """The audio files (their sizes and mtimes key the teacher-output cache and a run folder's data)."""
        return [c.path for c in self.clips]

    def without_bad_files(self, progress: bool = True) -> "Manifest":
        """The clips whose files decode to finite audio; each file left out is logged and added to ``skipped``."""
        bad = bad_files(self, progress)
        for problem in bad.values():
            log.warning("skipped %s", problem)
        kept = self.filter(lambda clip: clip.id not in bad)
        return replace(kept, skipped=self.skipped + list(bad.values()))

    def describe(self) -> str:
        """One line saying what the manifest holds."""
        if not self.labels:
            return f"{len(self)} clips of unlabelled audio (usable by `earmark pretrain`)"
        events = sum(len(c.events) for c in self.clips)
        return (f"{len(self)} clips, {len(self.labels)} classes, task {self.task}, {'multi' if self.multi_label else 'single'}-label"
                f"{f', {events} events' if events else ''}")

    def by_id(self) -> dict[str, Clip]:
        return {c.id: c for c in self.clips}


def file_stamps(paths: Iterable[os.PathLike]) -> str:
    """A hash of each file's path, size and modification time: replacing audio under the same name changes it."""
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def bad_files(manifest: Manifest, progress: bool = True) -> dict[str, str]:
    """Decode every file (block by block, a few at a time; a progress bar on a terminal): clip id -> the sentence saying
    why its file cannot be used (missing, empty, undecodable, NaN or infinite samples)."""
    from tqdm import tqdm

    def problem(clip: Clip) -> str | None:
        try:
            check_audio(clip.path)
        except (ValueError, FileNotFoundError) as err:
            return str(err).replace(f" ({SKIP_HINT})", "")  # the caller says what happens to the file
        return None

    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:  # libsndfile and numpy release the GIL
        found = tqdm(pool.map(problem, manifest.clips), total=len(manifest.clips), desc="decoding", unit="file",
                     disable=None if progress else True)
        return {clip.id: text for clip, text in zip(manifest.clips, found) if text is not None}


def clip_fold(clip: Clip) -> int:
    """The clip's fold: its manifest's fold column, else one of 5 from a hash of its id (stable across runs)."""
    return clip.fold if clip.fold is not None else 1 + zlib.crc32(clip.id.encode()) % 5


class _Rows:
    """Collects clips, turning bad rows into one clear error (or a reported skip)."""

    def __init__(self, source: Path, skip_bad: bool):
        self.source, self.skip_bad = source, skip_bad
        self.clips: dict[str, Clip] = {}
        self.skipped: list[str] = []
        self._shared_stems: set[str] = set()  # ids of files that differ only by extension (mace.ogg, mace.wav)

    def bad(self, row: int | str, problem: str) -> None:
        message = f"{self.source}, row {row}: {problem}"
        if not self.skip_bad:
            raise ValueError(message + " (fix the row, or pass --skip-bad to report and skip such rows).")
        self.skipped.append(message)
        log.warning("skipped %s", message)

    def add(self, row: int | str, clip: Clip, check_file: bool = True) -> None:
        if not clip.id:
            return self.bad(row, "the filename is empty")
        other = self.clips.get(clip.id)
        if other is not None and other.path.suffix != clip.path.suffix and other.id == other.path.stem:
            self._shared_stems.add(clip.id)  # both keep their extension in the id
            renamed = replace(other, id=other.id + other.path.suffix)
            self.clips = {c.id: c for c in (renamed if c is other else c for c in self.clips.values())}
        if clip.id in self._shared_stems:
            clip = replace(clip, id=clip.id + clip.path.suffix)
        if clip.id in self.clips:
            return self.bad(row, f"duplicated id {clip.id!r}")
        if check_file and not clip.path.is_file():
            return self.bad(row, f"audio file {clip.path} does not exist")
        self.clips[clip.id] = clip


def _number(rows: _Rows, row: int, text: str, what: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        rows.bad(row, f"{what} {text!r} is not a number")
        return None


def _fold(rows: _Rows, row: int, text: str | None) -> int | None:
    """An optional fold column: empty means "from the id hash"; anything else must be a whole number."""
    if not text:
        return None
    value = _number(rows, row, text, "fold")
    return int(value) if value is not None else None


def _audio_root(path: Path, audio_root: str | os.PathLike | None) -> Path:
    if audio_root is not None:
        return Path(audio_root)
    return path.parent / "audio" if (path.parent / "audio").is_dir() else path.parent


def _finish(rows: _Rows, label_set: LabelSet | None, found: Iterable[str], **kind) -> Manifest:
    labels = label_set or LabelSet(sorted(set(found)))
    clips = []
    for clip in rows.clips.values():
        unknown = [l for l in (*clip.labels, *(e[2] for e in clip.events)) if l not in labels]
        if unknown:
            rows.bad(clip.id, f"labels {unknown} are not in the label set {labels.to_list()}")
            continue
        clips.append(clip)
    return Manifest(clips, labels, source=str(rows.source), skipped=rows.skipped, **kind)


def read_folders(root: Path, labels: LabelSet | None = None, skip_bad: bool = False) -> Manifest:
    """root/<class>/<file>: one class per sub-folder; the id is "class/file". A flat folder of audio is unlabelled audio."""
    rows = _Rows(root, skip_bad)
    if not any(p.is_dir() for p in root.iterdir()):
        for file in sorted(p for p in root.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES):
            rows.add(file.name, Clip(file.stem, file))
        return Manifest(list(rows.clips.values()), labels or LabelSet([]), source=str(root), skipped=rows.skipped)
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES):
            rows.add(f"{class_dir.name}/{file.name}", Clip(f"{class_dir.name}/{file.name}", file, (class_dir.name,)))
    return _finish(rows, labels, (c.labels[0] for c in rows.clips.values()))


def _lines(path: Path) -> tuple[int, list[str]]:
    """(line number of the header, the lines from the header on). Leading ``#`` lines are comments, except that the
    last of them is the header when it names columns, as in AudioSet's segment CSVs (``# YTID, start_seconds, ...``)."""
    with open(path, newline="", encoding="utf-8-sig") as f:  # spreadsheets save CSV with a byte-order mark
        lines = f.read().splitlines()
    first = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    if first and ("," in lines[first - 1] or "\t" in lines[first - 1]):
        first -= 1
        lines[first] = lines[first].lstrip("# ")
    return first + 1, lines[first:]


def _table(path: Path, delimiter: str, *columns: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV/TSV that must have ``columns`` (``"a|b"``: either); a missing one is one sentence."""
    start, lines = _lines(path)
    reader = csv.DictReader(lines, delimiter=delimiter, skipinitialspace=True)
    found = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = found
    for column in columns:
        if not set(column.split("|")) & set(found):
            raise ValueError(f"{path}: has no {' or '.join(map(repr, column.split('|')))} column (its columns: {found}); "
                             "rename the column, or check that this is the manifest you meant.")
    return enumerate(reader, start=start + 1)


def read_esc50(path: Path, audio_root=None, labels: LabelSet | None = None, skip_bad: bool = False) -> Manifest:
    """ESC-50 CSV: filename, fold, target, category."""
    root, rows = _audio_root(path, audio_root), _Rows(path, skip_bad)
    for i, r in _table(path, ",", "filename", "fold", "category"):
        fold = _number(rows, i, r.get("fold"), "fold")
        if fold is not None and r.get("category"):
            rows.add(i, Clip(Path(r["filename"]).stem, root / r["filename"], (r["category"],), int(fold)))
        elif fold is not None:
            rows.bad(i, "the category is empty")
    return _finish(rows, labels, (c.labels[0] for c in rows.clips.values()))


def read_tau(path: Path, audio_root=None, labels: LabelSet | None = None, skip_bad: bool = False) -> Manifest:
    """TAU Urban Acoustic Scenes TSV: filename, scene_label (other columns ignored)."""
    root, rows = (Path(audio_root) if audio_root else path.parent), _Rows(path, skip_bad)
    for i, r in _table(path, "\t", "filename", "scene_label"):
        if not r.get("scene_label"):
            rows.bad(i, "the scene_label is empty")
            continue
        rows.add(i, Clip(Path(r["filename"]).stem, root / r["filename"], (r["scene_label"],), _fold(rows, i, r.get("fold")),
                         scene=r["scene_label"]))
    return _finish(rows, labels, (c.scene for c in rows.clips.values()))


def read_desed(path: Path, audio_root=None, labels: LabelSet | None = None, skip_bad: bool = False) -> Manifest:
    """DESED strong labels TSV: filename, onset, offset, event_label (optional fold); several rows per file, empty label = no event."""
    root, rows = _audio_root(path, audio_root), _Rows(path, skip_bad)
    events: dict[str, list[tuple[float, float, str]]] = {}
    first_row: dict[str, int] = {}
    folds: dict[str, int | None] = {}
    for i, r in _table(path, "\t", "filename", "onset", "offset", "event_label"):
        name = r.get("filename") or ""
        first_row.setdefault(name, i)
        if name not in folds:
            folds[name] = _fold(rows, i, r.get("fold"))
        events.setdefault(name, [])
        if not r.get("event_label"):
            continue
        onset, offset = _number(rows, i, r.get("onset"), "onset"), _number(rows, i, r.get("offset"), "offset")
        if onset is None or offset is None:
            continue
        if not 0 <= onset < offset:
            rows.bad(i, f"onset {onset} is not before offset {offset}")
            continue
        events[name].append((onset, offset, r["event_label"]))
    merged = 0
    for name, evs in events.items():
        evs = merge_overlaps(evs)
        merged += len(events[name]) - len(evs)
        clip_labels = tuple(sorted({e[2] for e in evs}))
        rows.add(first_row[name], Clip(Path(name).stem, root / name, clip_labels, folds[name], events=tuple(evs)))
    if merged:
        log.warning("%s: %d events overlapped or touched another of their label in the same file and were merged into it "
                    "(one sound to the metrics and the frame targets alike)", path, merged)
    return _finish(rows, labels, (e[2] for evs in events.values() for e in evs), multi_label=True, task="frame")


def merge_overlaps(events: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Sorted events, those of one label that overlap or touch merged into one (sed_scores_eval refuses them otherwise)."""
    merged: list[tuple[float, float, str]] = []
    latest: dict[str, int] = {}  # label -> index of its latest event in merged
    for onset, offset, label in sorted(events):
        i = latest.get(label)
        if i is not None and onset <= merged[i][1]:
            merged[i] = (merged[i][0], max(merged[i][1], offset), label)
        else:
            latest[label] = len(merged)
            merged.append((onset, offset, label))
    return merged


def read_multilabel(path: Path, audio_root=None, labels: LabelSet | None = None, skip_bad: bool = False) -> Manifest:
    """AudioSet-style CSV: filename (or YTID) and labels (or positive_labels) as "a,b,c"; an optional fold column."""
    root, rows = _audio_root(path, audio_root), _Rows(path, skip_bad)
    for i, r in _table(path, ",", "filename|YTID", "labels|positive_labels"):
        name = r.get("filename") or (f"{r['YTID']}.wav" if r.get("YTID") else "")
        names = [l.strip() for l in (r.get("labels") or r.get("positive_labels") or "").split(",") if l.strip()]
        if not name:
            rows.bad(i, "the filename (or YTID) is empty")
            continue
        rows.add(i, Clip(Path(name).stem, root / name, tuple(names), _fold(rows, i, r.get("fold"))))
    return _finish(rows, labels, (l for c in rows.clips.values() for l in c.labels), multi_label=True)


def detect_kind(path: Path) -> str:
    """Guess the format from the path and the header row."""
    if path.is_dir():
        return "folders"
    if path.suffix == ".tar" or "{" in path.name:
        return "webdataset"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such manifest; pass a CSV/TSV file, a folder of class folders or .tar shards.")
    _, lines = _lines(path)
    header = lines[0] if lines else ""
    if "event_label" in header and "onset" in header:
        return "desed"
    if "scene_label" in header:
        return "tau"
    if "category" in header and "fold" in header:
        return "esc50"
    if "labels" in header:
        return "multilabel"
    raise ValueError(
        f"{path}: cannot tell the format from its header {header.strip()!r}; "
        "expected ESC-50 (filename,fold,target,category), TAU (filename<TAB>scene_label), "
        "DESED (filename<TAB>onset<TAB>offset<TAB>event_label) or multi-label (filename,labels)."
    )


READERS = {"folders": read_folders, "esc50": read_esc50, "tau": read_tau, "desed": read_desed, "multilabel": read_multilabel}


def read_manifest(path: str | os.PathLike, kind: str = "auto", audio_root=None, labels: LabelSet | list[str] | None = None,
                  skip_bad: bool = False) -> Manifest:
    """Read a manifest of any supported format (``kind="auto"`` guesses it from the header)."""
    path = Path(path)
    kind = detect_kind(path) if kind == "auto" else kind
    if kind == "webdataset":
        raise ValueError(f"{path}: WebDataset shards are streamed, not listed; open them with earmark.audio.sources.open_data.")
    if kind not in READERS:
        raise ValueError(f"unknown manifest kind {kind!r}; choose one of {sorted(READERS)} or 'auto'.")
    label_set = LabelSet(labels) if isinstance(labels, list) else labels
    if kind == "folders":
        return read_folders(path, label_set, skip_bad)
    return READERS[kind](path, audio_root, label_set, skip_bad)
