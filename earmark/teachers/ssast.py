"""SSAST (Gong et al., AAAI 2022): AST's DeiT pretrained by masked patch modelling; the whole family.

Patch (16x16) and frame (128x2) models, non-overlapping, mean-token pooling (``ft_avgtok``). The reference
pads or cuts fbank to the trained 1024 frames (``fit``); fine-tuning at another length cuts the position grid
around its centre (``crop="centre"``, ``ASTModel`` fine-tuning stage). Sizes tiny (192), small (384) and base
(768), 12 blocks each, named as released. The reader is AST's ``module.v.*`` layout without ``mlp_head``.
"""

from __future__ import annotations

from typing import Any

from earmark.teachers.ast import pretraining_keys, yuangong_layout
from earmark.teachers.convert import RELEASED_DEPTH, Mapped, block_count, vit_size
from earmark.teachers.registry import Converter, TeacherFamily, build_config, register
from earmark.teachers.vit import ViTConfig, ViTTeacher

_SSAST = dict(layout="freq_major", n_mels=128, frames=1024, tokens=2, pool="mean", frontend="ast", length="fit", crop="centre")
_FRAME = dict(patch=(128, 2), stride=(128, 2))


def _looks_like(ckpt: dict) -> bool:
    layout = yuangong_layout(ckpt)
    return layout is not None and (pretraining_keys(layout[0]) or "mlp_head.1.weight" not in layout[0])


def convert_official(ckpt: dict, **_: Any) -> Mapped:
    """A pretrained SSAST (``module.v.*``): patch shape from the conv, trained frames from the positions; heads dropped."""
    state, backbone, dropped = yuangong_layout(ckpt)
    dropped += [k for k in state if k.startswith("mlp_head.")]
    size, overrides = vit_size(backbone["cls_token"].shape[-1])
    fshape, tshape = backbone["patch_embed.proj.weight"].shape[2:]
    overrides.update(patch=(fshape, tshape), stride=(fshape, tshape),
                     depth=block_count(backbone, "blocks.", RELEASED_DEPTH, "every released SSAST model has"))
    overrides["frames"] = (backbone["pos_embed"].shape[1] - 2) // (128 // fshape) * tshape
    return Mapped(f"ssast_{'frame' if fshape == 128 else 'patch'}_{size}", overrides, backbone, dropped=dropped)


register(TeacherFamily(
    "ssast", lambda args: ViTTeacher(build_config(ViTConfig, args)),
    variants={
        "ssast_patch_base": dict(_SSAST),
        "ssast_frame_base": dict(_SSAST, **_FRAME),
        "ssast_patch_small": dict(_SSAST, dim=384, heads=6),
        "ssast_frame_small": dict(_SSAST, **_FRAME, dim=384, heads=6),
        "ssast_patch_tiny": dict(_SSAST, dim=192, heads=3),  # the SSAST paper's tiny (about 6M)
        "ssast_frame_tiny": dict(_SSAST, **_FRAME, dim=192, heads=3),
    },
    formats={"ssast": Converter(convert_official, _looks_like, "YuanGongND/ssast DataParallel state dict (pretrained)")},
))
