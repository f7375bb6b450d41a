"""ASiT (Atito et al.): a ViT over 16x16 patches of the (time, mel) image with a cls token; the whole family.

Reference pipeline (Sara-Ahmed/ASiT ``data_transformations._wav2fbank``): AST's Kaldi fbank, padded with zeros
or cut to 592 frames before normalisation, so the family's length policy is ``fit`` to 592 frames. The released
code runs at 32 kHz, the paper at 16 kHz; ``earmark convert --from asit --sample-rate`` records which.

PretrainedSED's ASiT (``--from pretrainedsed-asit``) runs at 16 kHz on any length and reads its 37 x 8 learned
positions as an (8, 37) grid, resized bicubically to the input's (T/16, 8) grid unless the input has exactly 592
frames; its fine-tuned weights learned with that, so ``sed_positions`` reproduces it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from earmark.engine.official import strip
from earmark.teachers.convert import RELEASED_DEPTH, Mapped, block_count, vit_size
from earmark.teachers.pretrainedsed import split_wrapper, with_heads
from earmark.teachers.registry import Converter, TeacherFamily, build_config, register
from earmark.teachers.vit import ViTConfig, ViTTeacher

_ASIT = dict(layout="time_major", n_mels=128, frames=592, tokens=1, pool="cls", frontend="ast", length="fit")
_PREFIXES = ("backbone.", "module.backbone.")
_SED_PREFIXES = ("model.asit.", "model.")  # PretrainedSED's ASiTWrapper, and the names in its release files


class SEDPositionsASiT(ViTTeacher):
    """ASiT with PretrainedSED's position resizing (module docstring)."""

    def embed_patches(self, features: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x, grid = self.patch_embed(features)  # grid (T/16, mel/16), tokens time-major
        pos = self.pos_embed[:, self.pos_slots:]
        if features.shape[-1] * features.shape[-2] != self.cfg.frames * self.cfg.n_mels:  # their npatch == N test
            d = pos.shape[-1]
            trained = pos.transpose(1, 2).reshape(1, d, *self.grid[::-1])  # (37, 8) positions read as (8, 37)
            pos = F.interpolate(trained, size=grid, mode="bicubic", align_corners=False).reshape(1, d, -1).transpose(1, 2)
        return x + pos, grid


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


def _looks_like_pretrainedsed(ckpt: dict) -> bool:
    return any(p + "patch_embed.proj.weight" in ckpt and p + "cls_token" in ckpt and p + "dist_token" not in ckpt for p in _SED_PREFIXES)


def convert_pretrainedsed(ckpt: dict, **_: Any) -> Mapped:
    """PretrainedSED's ``ASiTWrapper`` (``model.asit.*``, the release's ``model.*``) with its heads, at 16 kHz on any length."""
    prefix = next(p for p in _SED_PREFIXES if p + "cls_token" in ckpt)
    backbone, heads, dropped = split_wrapper(ckpt, prefix)
    size, overrides = vit_size(backbone["cls_token"].shape[-1])
    overrides["depth"] = block_count(backbone, "blocks.", RELEASED_DEPTH, "every released ASiT model has")
    overrides.update(frames=(backbone["pos_embed"].shape[1] - 1) // 8 * 16, frontend="ast", length="any", sed_positions=True)
    return with_heads(Mapped(f"asit_{size}", overrides, backbone, dropped=dropped), heads, "cls_tokens")  # cls, then the tokens


def _build(args: dict[str, Any]) -> ViTTeacher:
    args = dict(args)
    return (SEDPositionsASiT if args.pop("sed_positions", False) else ViTTeacher)(build_config(ViTConfig, args))


register(TeacherFamily(
    "asit", _build,
    variants={
        "asit_base": dict(_ASIT),
        "asit_small": dict(_ASIT, dim=384, heads=6),
        "asit_tiny": dict(_ASIT, dim=64, depth=2, heads=4),
    },
    formats={"asit": Converter(convert_official, _looks_like, "ASiT {teacher: backbone.*, student, args, ...}"),
             "pretrainedsed-asit": Converter(convert_pretrainedsed, _looks_like_pretrainedsed,
                                             "PretrainedSED ASIT_{ssl,weak,strong_1}.pt (model.* / model.asit.*, strong/weak heads)")},
))
