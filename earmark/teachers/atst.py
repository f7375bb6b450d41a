"""ATST-Clip and ATST-Frame (Li et al., audiossl): the whole family.

A pre-LN ViT whose tokens are 64 mel bins x 4 frames (40 ms) through one linear layer, no qkv bias; Clip adds a
cls token. Positions cover 10 s and are taken from the start for shorter input (``pos_type="cut"``), so any
length up to 10 s is the reference's own policy. Readers take the EMA teacher of the Lightning checkpoints
(``model.teacher.encoder.*``), the DINO-style legacy layout, and ATST-Frame as ATST-SED stores it
(``encoder.encoder.*``, or ``model.teacher.encoder.*`` with an unused cls token and the final norm named ``norm``),
and PretrainedSED's ATST-F files (``model.atst.*`` with its frame heads, on the ``atst_sed`` frontend).
"""

from __future__ import annotations

from typing import Any

from earmark.engine.official import first_prefix, strip
from earmark.teachers.convert import RELEASED_DEPTH, Mapped, block_count, vit_size
from earmark.teachers.pretrainedsed import split_wrapper, with_heads
from earmark.teachers.registry import Converter, TeacherFamily, build_config, register
from earmark.teachers.vit import ViTConfig, ViTTeacher

_ATST = dict(layout="atst", patch=(64, 4), stride=(64, 4), n_mels=64, frames=1001, qkv_bias=False, frontend="atst", length="any")
_PREFIXES = ("model.teacher.encoder.", "encoder.encoder.", "teacher.encoder.", "module.backbone.", "backbone.")
# Only FrameATST's parser defines avg_blocks; "symmetric" (its BYOL loss flag) also reaches Clip files through **kwargs,
# so it tells nothing, and a hint from it would convert a Clip model as Frame and drop its cls token.
_FRAME_ONLY = ("avg_blocks",)
_SED_PREFIX = "model.atst."  # PretrainedSED's PredictionsWrapper(ATSTWrapper())


def _encoder(ckpt: dict) -> tuple[str | None, dict]:
    state = ckpt.get("state_dict", ckpt.get("teacher", ckpt))
    return first_prefix(state, _PREFIXES, "patch_embed.patch_embed.weight"), state


def _frame_evidence(ckpt: dict, prefix: str, state: dict) -> bool:
    """ATST-Frame for sure: its norm_frame, no cls token, ATST-SED's prefix, or FrameATST's own hyper-parameter."""
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt.get("hyper_parameters"), dict) else {}
    return (prefix + "norm_frame.weight" in state or prefix + "cls_token" not in state or prefix == "encoder.encoder."
            or any(k in hparams for k in _FRAME_ONLY))


def _looks_like_clip(ckpt: dict) -> bool:
    prefix, state = _encoder(ckpt)
    return prefix is not None and not _frame_evidence(ckpt, prefix, state)


def _looks_like_frame(ckpt: dict) -> bool:
    prefix, state = _encoder(ckpt)
    return prefix is not None and _frame_evidence(ckpt, prefix, state)


def _read(ckpt: dict, frame: bool) -> Mapped:
    prefix, state = _encoder(ckpt)
    mapped = _mapped(strip(state, prefix), frame, prefix, [k for k in state if not k.startswith(prefix)])
    if prefix == "encoder.encoder.":  # ATST-SED's own files: its pipeline clamps the decibels
        mapped.overrides["frontend"] = "atst_sed"
    return mapped


def _mapped(encoder: dict, frame: bool, prefix: str, dropped: list[str]) -> Mapped:
    """An encoder's tensors (prefix stripped) as ``atst_*_base`` with the file's width, depth and positions."""
    if "mask_embed" in encoder:
        dropped.append(prefix + "mask_embed")
        encoder.pop("mask_embed")
    if frame:
        if "cls_token" in encoder:  # ATST-SED's layout: the frame model never reads it
            dropped.append(prefix + "cls_token")
            encoder.pop("cls_token")
        encoder = {("norm." + k[len("norm_frame."):] if k.startswith("norm_frame.") else k): v for k, v in encoder.items()}
    _, overrides = vit_size(encoder["patch_embed.patch_embed.weight"].shape[0])
    overrides["depth"] = block_count(encoder, "blocks.", RELEASED_DEPTH, "every released ATST model has")
    overrides["frames"] = (encoder["pos_embed"].shape[1] - 1) * 4 + 1
    return Mapped(f"atst_{'frame' if frame else 'clip'}_base", overrides, encoder, dropped=dropped)


def convert_clip(ckpt: dict, **_: Any) -> Mapped:
    """ATST-Clip: the encoder with its cls token and final ``norm``."""
    return _read(ckpt, frame=False)


def convert_frame(ckpt: dict, **_: Any) -> Mapped:
    """ATST-Frame: the encoder with ``norm_frame`` (or ATST-SED's ``norm``) as its final norm; a stray cls token dropped."""
    return _read(ckpt, frame=True)


def _looks_like_pretrainedsed(ckpt: dict) -> bool:
    return _SED_PREFIX + "patch_embed.patch_embed.weight" in ckpt


def convert_pretrainedsed(ckpt: dict, **_: Any) -> Mapped:
    """PretrainedSED's ``ATSTWrapper`` (``model.atst.*``): ATST-Frame on ATSTMel's clamped decibels, with its heads."""
    encoder, heads, dropped = split_wrapper(ckpt, _SED_PREFIX)  # ATSTMel's filterbank buffers (model.atst_mel.*) are dropped
    mapped = _mapped(encoder, True, _SED_PREFIX, dropped)
    mapped.overrides["frontend"] = "atst_sed"
    return with_heads(mapped, heads, "tokens")


_TINY = dict(dim=64, depth=2, heads=4)
register(TeacherFamily(
    "atst", lambda args: ViTTeacher(build_config(ViTConfig, args)),
    variants={
        "atst_clip_base": dict(_ATST, tokens=1, pool="cls"),
        "atst_clip_small": dict(_ATST, tokens=1, pool="cls", dim=384, heads=6),
        "atst_clip_tiny": dict(_ATST, tokens=1, pool="cls", **_TINY),
        "atst_frame_base": dict(_ATST, tokens=0, pool="mean"),
        "atst_frame_small": dict(_ATST, tokens=0, pool="mean", dim=384, heads=6),
        "atst_frame_tiny": dict(_ATST, tokens=0, pool="mean", **_TINY),
    },
    formats={
        "atst-clip": Converter(convert_clip, _looks_like_clip, "audiossl ATST-Clip Lightning .ckpt"),
        "atst-frame": Converter(convert_frame, _looks_like_frame, "audiossl ATST-Frame .ckpt or ATST-SED's atst_as2M.ckpt"),
        "pretrainedsed-atst": Converter(convert_pretrainedsed, _looks_like_pretrainedsed,
                                        "PretrainedSED ATST-F_{ssl,weak,strong_1}.pt (model.atst.*, strong/weak heads)"),
    },
))
