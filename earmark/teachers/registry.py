"""The teacher registry: each family at its paper's size, plus small/tiny configurations for CPUs and tests."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from earmark.teachers.beats import BEATs, BEATsConfig
from earmark.teachers.vit import ViTConfig, ViTTeacher

_ASIT = dict(layout="time_major", n_mels=128, frames=592, tokens=1, pool="cls", frontend="ast")
_ATST = dict(layout="atst", patch=(64, 4), stride=(64, 4), n_mels=64, frames=1001, qkv_bias=False, frontend="atst")
_SSAST = dict(layout="freq_major", n_mels=128, frames=1024, tokens=2, pool="mean", frontend="ast")
_TINY = dict(dim=64, depth=2, heads=4)

VIT_TEACHERS: dict[str, dict[str, Any]] = {
    "asit_base": dict(_ASIT),
    "asit_small": dict(_ASIT, dim=384, heads=6),
    "asit_tiny": dict(_ASIT, **_TINY),
    "atst_clip_base": dict(_ATST, tokens=1, pool="cls"),
    "atst_clip_small": dict(_ATST, tokens=1, pool="cls", dim=384, heads=6),
    "atst_clip_tiny": dict(_ATST, tokens=1, pool="cls", **_TINY),
    "atst_frame_base": dict(_ATST, tokens=0, pool="mean"),
    "atst_frame_small": dict(_ATST, tokens=0, pool="mean", dim=384, heads=6),
    "atst_frame_tiny": dict(_ATST, tokens=0, pool="mean", **_TINY),
    "ssast_patch_base": dict(_SSAST),
    "ssast_frame_base": dict(_SSAST, patch=(128, 2), stride=(128, 2)),
    "ssast_patch_tiny": dict(_SSAST, dim=192, heads=3),  # the SSAST paper's tiny (about 6M)
    "ssast_frame_tiny": dict(_SSAST, patch=(128, 2), stride=(128, 2), dim=192, heads=3),
    "ast_base": dict(_SSAST, stride=(10, 10), pool="cls_dist"),
    "ast_tiny": dict(_SSAST, stride=(10, 10), pool="cls_dist", **_TINY),
    "acmsskd_base": dict(_ASIT, tokens=0, pool="mean", frames=1024, extra_mlp=True),
    "acmsskd_tiny": dict(_ASIT, tokens=0, pool="mean", frames=1024, extra_mlp=True, **_TINY),
}
BEATS_TEACHERS: dict[str, dict[str, Any]] = {
    "beats_base": {},
    "beats_tiny": dict(conv_dim=32, dim=64, depth=2, heads=4, ffn=128, pos_conv=16, pos_groups=4),
}


def _tuple_fields(cls, overrides: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown teacher arguments {unknown}; {cls.__name__} takes {sorted(names)}.")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}


def create_teacher(name: str, **overrides: Any) -> nn.Module:
    """A registered teacher backbone (random weights; load official ones with `earmark convert`)."""
    frontend = overrides.pop("frontend", None)
    if name in BEATS_TEACHERS:
        cfg = BEATsConfig(**_tuple_fields(BEATsConfig, {**BEATS_TEACHERS[name], **overrides}))
        return BEATs(cfg, frontend or "beats")
    if name in VIT_TEACHERS:
        args = {**VIT_TEACHERS[name], **overrides, **({"frontend": frontend} if frontend else {})}
        return ViTTeacher(ViTConfig(**_tuple_fields(ViTConfig, args)))
    raise ValueError(f"unknown teacher {name!r}; choose one of {sorted(list_teachers())}.")


def list_teachers() -> list[str]:
    """Registered teacher names."""
    return [*BEATS_TEACHERS, *VIT_TEACHERS]


def family(name: str) -> str:
    """The family a registered name belongs to (beats, asit, atst, ssast, ast, acmsskd)."""
    return name.split("_")[0]
