"""Model checkpoints (DESIGN artifact 2): ``model.safetensors`` + ``earmark.json``; loading never unpickles.

The engine knows no model: it stores tensors and a metadata dict. The metadata names the
family (``student`` or ``teacher``), the registered ``model`` name and its ``model_args``; each model
stage registers, on import, how to build the module a checkpoint of its family describes (float, and
with fake quantizers for a quantized checkpoint), and ``load_model`` loads any checkpoint through that.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from earmark.engine.outputs import OBJECTIVES
from earmark.engine.schema import check_meta

CHECKPOINT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "earmark.json"


def default_objective(task: str) -> str:
    """Frame-level models detect events; clip models classify scenes unless told otherwise."""
    return "detect" if task == "frame" else "classify"


@dataclass
class CheckpointMeta:
    """What ``earmark.json`` holds besides the weights."""

    family: str  # "student" | "teacher"
    model: str  # registry name, e.g. "tfsepnet64", "beats_base"
    model_args: dict[str, Any]
    frontend: dict[str, Any]  # FrontendSpec.to_dict()
    labels: list[str] = field(default_factory=list)
    task: str = "clip"  # "clip" | "frame"
    objective: str = "classify"  # "classify": softmax over scenes | "detect": independent sigmoid detectors (events)
    scene_labels: list[str] = field(default_factory=list)  # a student's second head: softmax scenes beside its events
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. quantization config, window seconds
    format_version: int = CHECKPOINT_VERSION

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES or (self.task == "frame" and self.objective != "detect"):
            raise ValueError(f"objective {self.objective!r} with task {self.task!r}: choose one of {OBJECTIVES} "
                             "('detect' for frame-level models).")

    @property
    def quantized(self) -> bool:
        """Whether the weights carry fake quantizers (``extra["quantization"]``, written by quantization-aware training)."""
        return "quantization" in self.extra

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


Builder = Callable[[CheckpointMeta], torch.nn.Module]


@dataclass(frozen=True)
class _Family:
    build: Builder
    build_quantized: Builder | None
    written_by: str


_FAMILIES: dict[str, _Family] = {}


def register_family(family: str, build: Builder, written_by: str, build_quantized: Builder | None = None) -> None:
    """Say how checkpoints of ``family`` are rebuilt (a model stage does this when its package is imported).

    ``build(meta)`` returns the untrained module the metadata describes, ready for the weights; it checks what only
    the stage knows (constructor arguments, output width against the labels) and raises ValueError.
    ``build_quantized(meta)`` does the same for a quantized checkpoint, with its fake quantizers in place.
    ``written_by`` names the verbs that write such checkpoints, for error messages.
    """
    _FAMILIES[family] = _Family(build, build_quantized, written_by)


def save_checkpoint(path: str | os.PathLike, state_dict: dict[str, torch.Tensor], meta: CheckpointMeta) -> Path:
    """Write ``path/`` atomically: a complete ``.NAME.new`` folder replaces the old one by renames; returns the folder.

    A kill at any point leaves either the old or the new checkpoint, never neither: between the two renames
    only ``.NAME.old`` and ``.NAME.new`` exist, and the next open (``recover``) finishes the swap.
    Files and folders get the process umask's permissions (a service user can read them).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new, old = _sibling(path, "new"), _sibling(path, "old")
    with _folder_lock(path.parent):
        recover(path)
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
        save_file(_untie(tensors), str(new / WEIGHTS_FILE))
        (new / META_FILE).write_text(json.dumps(meta.to_dict(), indent=2, sort_keys=True))
        for name in (WEIGHTS_FILE, META_FILE):
            _fsync(new / name)
        if path.exists():
            path.rename(old)
        new.rename(path)
        _fsync(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    return path


def recover(path: str | os.PathLike) -> None:
    """Finish or undo a checkpoint swap a kill interrupted, and remove what it left behind."""
    path = Path(path)
    new, old = _sibling(path, "new"), _sibling(path, "old")
    if not path.exists() and old.exists():
        # Killed between the renames: .new is complete (it is renamed only once written), so it wins.
        (new if new.exists() else old).rename(path)
    for leftover in (new, old):
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)


def _sibling(path: Path, role: str) -> Path:
    return path.with_name(f".{path.name}.{role}")


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An advisory lock on ``folder`` itself, so a writer's swap and a reader's recovery never interleave."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _untie(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage; clone tensors that alias an earlier one."""
    seen: set[int] = set()
    out = {}
    for name, t in tensors.items():
        ptr = t.untyped_storage().data_ptr() if t.numel() else -id(t)
        out[name] = t.clone() if ptr in seen else t
        seen.add(ptr)
    return out


def read_meta(path: str | os.PathLike) -> CheckpointMeta:
    """The metadata of a checkpoint folder, checked against the schema; one clear error when it is not one."""
    path = Path(path)
    if path.parent.is_dir() and not path.exists():
        with _folder_lock(path.parent):
            recover(path)
    meta_file = path / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint; pass a folder written by earmark (it holds {META_FILE} and {WEIGHTS_FILE}).")
    if not meta_file.is_file():
        raise ValueError(
            f"{path}: not an earmark checkpoint (no {META_FILE}); convert official weights with `earmark convert` first."
        )
    try:
        data = json.loads(meta_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{meta_file}: is damaged ({err}); re-create the checkpoint.") from None
    if isinstance(data, dict) and data.get("format_version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint format {data.get('format_version')!r} is not {CHECKPOINT_VERSION}; re-create it with this earmark.")
    check_meta(data, CheckpointMeta, str(meta_file))
    if "objective" not in data:  # written before the objective was recorded: it was implied by these two
        data["objective"] = "detect" if data.get("extra", {}).get("multi_label", data.get("task") == "frame") else "classify"
    try:
        return CheckpointMeta(**data)
    except ValueError as err:  # the fields' own checks (objective against task)
        raise ValueError(f"{meta_file}: {err}") from None


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """The weights (CPU tensors) and metadata of a checkpoint folder."""
    meta = read_meta(path)
    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise ValueError(f"{path}: {WEIGHTS_FILE} is missing; the checkpoint is incomplete, re-create it.")
    try:
        return load_file(str(weights)), meta
    except SafetensorError as err:
        raise ValueError(f"{weights}: is damaged or truncated ({err}); re-create the checkpoint or copy it again.") from None


def load_model(path: str | os.PathLike, family: str | None = None) -> tuple[torch.nn.Module, CheckpointMeta]:
    """Any checkpoint's model (eval mode) and metadata, built by its family's registered builder; one clear error each way.

    ``family`` refuses a checkpoint of another family. A family's builder is registered when its stage is imported
    (``earmark.students``, ``earmark.teachers``).
    """
    state, meta = load_checkpoint(path)
    if family is not None and meta.family != family:
        wanted = f"; pass a checkpoint written by {_FAMILIES[family].written_by}" if family in _FAMILIES else ""
        raise ValueError(f"{path} holds a {meta.family} ({meta.model}), not a {family}{wanted}.")
    if meta.family not in _FAMILIES:
        raise ValueError(f"{Path(path) / META_FILE} names the model family {meta.family!r}, which no model stage rebuilds "
                         f"(known: {', '.join(sorted(_FAMILIES))}; a stage registers its family when imported); "
                         "pass a checkpoint earmark wrote.")
    registered = _FAMILIES[meta.family]
    build = registered.build_quantized if meta.quantized else registered.build
    if build is None:
        raise ValueError(f"{path}: a quantized {meta.family} cannot be rebuilt; pass a float checkpoint.")
    try:
        model = build(meta)
    except ValueError as err:
        raise ValueError(f"{Path(path) / META_FILE}: {err}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        lines = str(err).splitlines()
        detail = lines[1].strip() if len(lines) > 1 else lines[0]
        raise ValueError(f"{path}: the weights do not fit {meta.model} {meta.model_args} ({detail}); "
                         "the checkpoint is from another architecture or version.") from None
    return model.eval(), meta


def checkpoint_hash(path: str | os.PathLike) -> str:
    """SHA-256 over the weights and metadata files: the identity a cache or an export refers to."""
    digest = hashlib.sha256()
    for name in (META_FILE, WEIGHTS_FILE):
        with open(Path(path) / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def update_extra(path: str | os.PathLike, **values: Any) -> CheckpointMeta:
    """Merge ``values`` into a checkpoint's ``extra`` (e.g. tuned thresholds); ``earmark.json`` is replaced atomically."""
    meta = read_meta(path)
    meta.extra.update(values)
    meta_file = Path(path) / META_FILE
    tmp = meta_file.with_name(f".{META_FILE}.tmp")
    tmp.write_text(json.dumps(meta.to_dict(), indent=2, sort_keys=True))
    os.replace(tmp, meta_file)
    return meta
