"""AST (Gong et al., Interspeech 2021): DeiT over 16x16 patches of the (mel, time) image at stride 10; the whole family.

Tokens are frequency-major behind a cls and a distillation token; the clip embedding is their mean and the
AudioSet head is ``mlp_head`` = LayerNorm (eps 1e-5) + Linear, trained with BCE (sigmoid detectors) for the
released AudioSet and Speech Commands models. Reference pipeline (YuanGongND/ast
``src/dataloader.py``): Kaldi fbank padded with zeros or cut to the trained frame count (1024 for AudioSet,
128 for Speech Commands) before normalisation, so the length policy is ``fit``; positions resized for another
length are cut around the centre (``ASTModel.__init__``). The ``module.v.*`` reader is shared with SSAST.
"""

from __future__ import annotations

from typing import Any

import torch

from earmark.teachers.convert import RELEASED_DEPTH, Mapped, block_count, vit_size
from earmark.teachers.registry import Converter, TeacherFamily, build_config, register
from earmark.teachers.vit import ViTConfig, ViTTeacher

_AST = dict(layout="freq_major", n_mels=128, frames=1024, tokens=2, frontend="ast", length="fit", crop="centre")
_IMAGENET_HEADS = ("head.weight", "head.bias", "head_dist.weight", "head_dist.bias")
_SSAST_ONLY = ("p_input_fdim", "p_input_tdim", "mask_embed", "cpredlayer.0.weight", "gpredlayer.0.weight")
_RELEASED_FRAMES = (1024, 512, 128)  # AudioSet, ESC-50 recipe, Speech Commands
_RELEASED_STRIDES = (10, 12, 14, 16)


def yuangong_layout(ckpt: dict) -> tuple[dict, dict, list[str]] | None:
    """A ``DataParallel`` state dict of YuanGongND's ASTModel: (all keys without ``module.``, ``v.*`` backbone, dropped)."""
    state = ckpt.get("state_dict", ckpt)
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    backbone = {k[2:]: v for k, v in state.items() if k.startswith("v.") and k[2:] not in _IMAGENET_HEADS}
    if "cls_token" not in backbone or "dist_token" not in backbone:
        return None
    dropped = [k for k in state if not k.startswith(("v.", "mlp_head.")) or k[2:] in _IMAGENET_HEADS]
    return state, backbone, dropped


def pretraining_keys(state: dict) -> bool:
    """SSAST's pretraining-only modules (its masked-patch heads and input shape) are present."""
    return any(k in state for k in _SSAST_ONLY)


def _looks_like(ckpt: dict) -> bool:
    layout = yuangong_layout(ckpt)
    return layout is not None and "mlp_head.1.weight" in layout[0] and not pretraining_keys(layout[0])


def geometry(patches: int) -> tuple[int, int]:
    """(stride, trained frames) of a 16x16-patch AST over 128 mel bins with ``patches`` patch positions."""
    for stride in (*_RELEASED_STRIDES, *(s for s in range(4, 17) if s not in _RELEASED_STRIDES)):
        f_dim = (128 - 16) // stride + 1
        if patches % f_dim == 0:
            t_dim = patches // f_dim
            return stride, next((f for f in _RELEASED_FRAMES if (f - 16) // stride + 1 == t_dim), (t_dim - 1) * stride + 16)
    raise ValueError(f"its {patches} patch positions fit no square stride of 16x16 patches over 128 mel bins.")


def convert_official(ckpt: dict, **_: Any) -> Mapped:
    """An AST checkpoint (``module.v.*`` and ``module.mlp_head.*``): stride and trained length from the position count."""
    state, backbone, dropped = yuangong_layout(ckpt)
    size, overrides = vit_size(backbone["cls_token"].shape[-1])
    stride, frames = geometry(backbone["pos_embed"].shape[1] - 2)
    overrides.update(stride=(stride, stride), frames=frames,
                     depth=block_count(backbone, "blocks.", RELEASED_DEPTH, "every released AST model has"))
    mapped: dict[str, torch.Tensor] = {f"backbone.{k}": v for k, v in backbone.items()}
    mapped.update({f"head.{k[len('mlp_head.'):]}": v for k, v in state.items() if k.startswith("mlp_head.")})
    labels = [f"class_{i}" for i in range(state["mlp_head.1.weight"].shape[0])]
    return Mapped(f"ast_{size}", overrides, mapped, labels, "cls_norm", dropped=dropped, objective="detect")  # trained with BCE


register(TeacherFamily(
    "ast", lambda args: ViTTeacher(build_config(ViTConfig, args)),
    variants={
        "ast_base": dict(_AST, stride=(10, 10), pool="cls_dist"),
        "ast_small": dict(_AST, stride=(10, 10), pool="cls_dist", dim=384, heads=6),
        "ast_tiny": dict(_AST, stride=(10, 10), pool="cls_dist", dim=64, depth=2, heads=4),
    },
    formats={"ast": Converter(convert_official, _looks_like, "YuanGongND/ast DataParallel state dict with mlp_head")},
))
