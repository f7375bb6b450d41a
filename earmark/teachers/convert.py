"""Official teacher checkpoints -> earmark checkpoints, key by key, without unpickling arbitrary objects.

The readers live with their families (``registry.converters()``); this module holds what they share: the
outcome type, checks on block counts and weight-norm folding, and ``convert``, which tells the file's family
from its keys when ``--from`` names another, reads it, and refuses missing, unknown or mis-shaped keys in one
sentence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import torch

from earmark.audio.spec import get_frontend
from earmark.engine.checkpoint import save_checkpoint
from earmark.engine.official import check_format, safe_load
from earmark.teachers.checkpoint import build_teacher, teacher_checkpoint_meta
from earmark.teachers.registry import arguments, converters

SIZES = {768: ("base", 12), 384: ("small", 6), 192: ("tiny", 3)}  # ViT width -> released size name, heads
RELEASED_DEPTH = 12  # every released ViT teacher (tiny to base) has 12 blocks


@dataclass
class Mapped:
    """The outcome of reading an official checkpoint: a registry name, its overrides and the renamed tensors."""

    name: str
    overrides: dict[str, Any]
    state: dict[str, torch.Tensor]
    labels: list[str] = field(default_factory=list)
    head: str | None = None
    dropped: list[str] = field(default_factory=list)  # known keys not needed by the teacher (pretraining heads, optimizer)
    objective: str = "classify"  # what the head's logits mean: softmax classes, or independent sigmoid detectors ("detect")
    task: str = "clip"  # "frame" when the head gives frame logits
    head_options: dict[str, Any] = field(default_factory=dict)  # the TeacherClassifier's further arguments


def audioset_labels() -> list[str]:
    """AudioSet's 527 class names in the order of its ``class_labels_indices.csv`` (the order of every AudioSet tagger's head)."""
    return resources.files("earmark.teachers").joinpath("audioset_527.txt").read_text().splitlines()


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace weight_g / weight_v pairs (old and parametrized names) by the folded weight ``g v / ||v||``."""
    out = dict(state)
    for key in [k for k in state if k.endswith(("weight_g", "parametrizations.weight.original0"))]:
        base = key[: -len("weight_g")] if key.endswith("weight_g") else key[: -len("parametrizations.weight.original0")]
        g = out.pop(key)
        v = out.pop(base + ("weight_v" if key.endswith("weight_g") else "parametrizations.weight.original1"))
        dims = [d for d in range(v.dim()) if g.shape[d] == 1]  # norm over the dims where g is broadcast
        out[base + "weight"] = g * v / v.norm(dim=dims, keepdim=True)
    return out


def vit_size(dim: int) -> tuple[str, dict[str, Any]]:
    """The released size name of a ViT width and its width/heads overrides."""
    if dim not in SIZES:
        raise ValueError(f"its embedding width {dim} matches no released size ({sorted(SIZES)}).")
    size, heads = SIZES[dim]
    return size, {"dim": dim, "heads": heads}


def block_count(state: dict[str, torch.Tensor], prefix: str, expected: int, source: str) -> int:
    """The number of blocks under ``prefix``; fewer than ``expected`` (``source`` says whose depth: "its cfg has") is an error."""
    found = sorted({int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)})
    if not found:
        raise ValueError(f"holds no transformer blocks ({prefix}*).")
    depth = max(found[-1] + 1, expected)
    missing = sorted(set(range(depth)) - set(found))
    if missing:
        raise ValueError(f"holds {len(found)} transformer blocks where {source} {depth} (blocks {missing} are missing); "
                         "the file is incomplete, download it again.")
    return depth


def convert(fmt: str, src: str | os.PathLike, out: str | os.PathLike, sample_rate: int = 32000, labels: list[str] | None = None,
            looks_like: dict[str, Callable[[dict], bool]] | None = None) -> tuple[Path, Mapped]:
    """Read an official checkpoint of ``fmt`` and write it as an earmark teacher checkpoint at ``out``.

    ``looks_like`` adds other stages' formats to the family detection (the CLI passes the students').
    """
    table = converters()
    if fmt not in table:
        raise ValueError(f"unknown checkpoint format {fmt!r}; choose one of {sorted(table)}.")
    ckpt = safe_load(src)
    check_format(fmt, ckpt, src, {**(looks_like or {}), **{f: c.looks_like for f, c in table.items()}})
    try:
        mapped = table[fmt].read(ckpt, sample_rate=sample_rate)
    except ValueError as err:
        raise ValueError(f"{src}: {err}") from None
    if labels:
        mapped.labels = list(labels)
    frontend = get_frontend(arguments(mapped.name, mapped.overrides)["frontend"])  # every family names its FrontendSpec
    meta = teacher_checkpoint_meta(frontend, mapped.name, mapped.overrides, mapped.labels, mapped.task, mapped.head,
                                   objective=mapped.objective, head_options=mapped.head_options, dropped_keys=len(mapped.dropped))
    model = build_teacher(meta)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped.state))
    unknown = sorted(set(mapped.state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(mapped.state) if expected[k].shape != mapped.state[k].shape)
    if missing or unknown or wrong:
        raise ValueError(f"{src}: does not map onto {mapped.name} ({fmt}): missing {missing[:8]}, unknown {unknown[:8]}, "
                         f"wrong shapes {wrong[:8]}; check --from matches the file.")
    model.load_state_dict(mapped.state)
    meta.provenance = {"converted_from": str(src), "format": fmt, "sample_rate": model.frontend.sample_rate}
    return save_checkpoint(out, model.state_dict(), meta), mapped
