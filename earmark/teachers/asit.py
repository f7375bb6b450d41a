"""ASiT (Atito et al.): a ViT over 16x16 patches of the (time, mel) image with a cls token; the whole family.

Reference pipeline (Sara-Ahmed/ASiT ``data_transformations._wav2fbank``): AST's Kaldi fbank, padded with zeros
or cut to 592 frames before normalisation, so the family's length policy is ``fit`` to 592 frames. The released
code runs at 32 kHz, the paper at 16 kHz; ``earmark convert --from asit --sample-rate`` records which.
"""

from __future__ import annotations

from typing import Any

from earmark.engine.official import strip
from earmark.teachers.convert import RELEASED_DEPTH, Mapped, block_count, vit_size
from earmark.teachers.registry import Converter, TeacherFamily, build_config, register
from earmark.teachers.vit import ViTConfig, ViTTeacher

_ASIT = dict(layout="time_major", n_mels=128, frames=592, tokens=1, pool="cls", frontend="ast", length="fit")
_PREFIXES = ("backbone.", "module.backbone.")


def _state(ckpt: dict) -> dict:
    return ckpt["teacher"] if isinstance(ckpt.get("teacher"), dict) else ckpt


def _looks_like(ckpt: dict) -> bool:
    state = _state(ckpt)
    return any(p + "patch_embed.proj.weight" in state and p + "cls_token" in state and p + "dist_token" not in state for p in _PREFIXES)


def convert_official(ckpt: dict, sample_rate: int = 32000, **_: Any) -> Mapped:
    """An ASiT pretraining checkpoint's EMA teacher (``teacher`` -> ``backbone.*``); heads and student reported as dropped."""
    state = _state(ckpt)
    prefix = next(p for p in _PREFIXES if p + "cls_token" in state)
    backbone = strip(state, prefix)
    size, overrides = vit_size(backbone["cls_token"].shape[-1])
    overrides["depth"] = block_count(backbone, "blocks.", RELEASED_DEPTH, "every released ASiT model has")
    overrides["frames"] = (backbone["pos_embed"].shape[1] - 1) // 8 * 16
    overrides["frontend"] = "asit32k" if sample_rate == 32000 else "ast"
    dropped = [k for k in state if not k.startswith(prefix)]
    return Mapped(f"asit_{size}", overrides, backbone, dropped=dropped)


register(TeacherFamily(
    "asit", lambda args: ViTTeacher(build_config(ViTConfig, args)),
    variants={
        "asit_base": dict(_ASIT),
        "asit_small": dict(_ASIT, dim=384, heads=6),
        "asit_tiny": dict(_ASIT, dim=64, depth=2, heads=4),
    },
    formats={"asit": Converter(convert_official, _looks_like, "ASiT {teacher: backbone.*, student, args, ...}")},
))
