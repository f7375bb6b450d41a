"""Official checkpoints -> earmark checkpoints, key by key, without unpickling arbitrary objects.

Each reader takes the official file's tensors (``torch.load(weights_only=True)`` with a small
allow-list), infers the configuration from shapes, renames keys onto earmark's modules, and reports
keys it does not know or that the model misses in one clear error.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from earmark.audio.spec import PRESETS
from earmark.engine.checkpoint import save_checkpoint
from earmark.teachers.checkpoint import build_teacher, teacher_checkpoint_meta

SAFE_GLOBALS = [argparse.Namespace]  # ASiT stores its argparse namespace
SIZES = {768: ("base", 12), 384: ("small", 6), 192: ("tiny", 3)}


@dataclass
class Mapped:
    """The outcome of reading an official checkpoint."""

    name: str
    overrides: dict[str, Any]
    state: dict[str, torch.Tensor]
    labels: list[str] = field(default_factory=list)
    head: str | None = None
    frontend: str | None = None
    dropped: list[str] = field(default_factory=list)  # known keys not needed by the teacher (pretraining heads, optimizer)


def safe_load(path: str | os.PathLike) -> dict:
    """``torch.load(weights_only=True)`` with the allow-list; a refused global is one clear error."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file.")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError and friends
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: cannot be read safely ({first}); earmark never unpickles arbitrary objects. "
                         "Re-save it with only tensors and plain types (e.g. torch.save(ckpt['state_dict'], 'weights.pt')).") from None


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


def strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def read_beats(ckpt: dict, **_) -> Mapped:
    cfg, state = ckpt.get("cfg", {}), fold_weight_norm(ckpt["model"])
    for flag, want in (("deep_norm", True), ("relative_position_embedding", True), ("gru_rel_pos", True), ("layer_norm_first", False)):
        if cfg.get(flag, want) != want:
            raise ValueError(f"BEATs cfg {flag}={cfg.get(flag)} is not supported (earmark implements the iter3 architecture).")
    overrides = {"conv_dim": cfg.get("embed_dim", 512), "dim": cfg.get("encoder_embed_dim", 768), "depth": cfg.get("encoder_layers", 12),
                 "heads": cfg.get("encoder_attention_heads", 12), "ffn": cfg.get("encoder_ffn_embed_dim", 3072),
                 "patch": cfg.get("input_patch_size", 16), "pos_conv": cfg.get("conv_pos", 128), "pos_groups": cfg.get("conv_pos_groups", 16),
                 "buckets": cfg.get("num_buckets", 320), "max_distance": cfg.get("max_distance", 800)}
    shared = state.get("encoder.layers.0.self_attn.relative_attention_bias.weight")
    for key in [k for k in state if re.match(r"encoder\.layers\.[1-9]\d*\.self_attn\.relative_attention_bias\.weight", k)]:
        if not torch.equal(state.pop(key), shared):
            raise ValueError(f"{key} differs from layer 0's table; BEATs shares one relative-position table across layers.")
    labels, head = [], None
    if "predictor.weight" in state:
        label_dict = ckpt.get("label_dict") or {}
        labels = [str(label_dict.get(i, f"class_{i}")) for i in range(state["predictor.weight"].shape[0])]
        state = {**{f"backbone.{k}": v for k, v in state.items() if not k.startswith("predictor.")},
                 "head.weight": state["predictor.weight"], "head.bias": state["predictor.bias"]}
        head = "linear"  # token-wise linear then mean == linear on the mean token
    return Mapped("beats_base", overrides, state, labels, head)


def _vit_size(dim: int) -> tuple[str, dict[str, Any]]:
    if dim not in SIZES:
        raise ValueError(f"embedding width {dim} matches no released size ({sorted(SIZES)}).")
    size, heads = SIZES[dim]
    return size, {"dim": dim, "heads": heads}


def read_atst(ckpt: dict, frame: bool, **_) -> Mapped:
    state = ckpt.get("state_dict", ckpt)
    for prefix in ("model.teacher.encoder.", "encoder.encoder.", "teacher.encoder.", "module.backbone.", "backbone."):
        encoder = strip(state, prefix)
        if encoder:
            break
    else:
        raise ValueError("no ATST encoder keys (model.teacher.encoder.* in a Lightning checkpoint); is this an audiossl checkpoint?")
    dropped = [k for k in state if not k.startswith(prefix)]
    encoder.pop("mask_embed", None)
    norm = "norm_frame." if frame else "norm."
    encoder = {("norm." + k[len(norm):] if k.startswith(norm) else k): v for k, v in encoder.items()}
    _, overrides = _vit_size(encoder["patch_embed.patch_embed.weight"].shape[0])
    overrides["depth"] = 1 + max(int(k.split(".")[1]) for k in encoder if k.startswith("blocks."))
    overrides["frames"] = (encoder["pos_embed"].shape[1] - 1) * 4 + 1
    return Mapped(f"atst_{'frame' if frame else 'clip'}_base", overrides, encoder, dropped=dropped)


def read_asit(ckpt: dict, sample_rate: int = 32000, **_) -> Mapped:
    state = ckpt.get("teacher", ckpt)
    backbone = strip(state, "backbone.") or strip(state, "module.backbone.")
    if not backbone:
        raise ValueError("no ASiT backbone keys (teacher -> backbone.*); is this an ASiT pretraining checkpoint?")
    dropped = [k for k in state if not k.startswith(("backbone.", "module.backbone."))]
    size, overrides = _vit_size(backbone["cls_token"].shape[-1])
    overrides["depth"] = 1 + max(int(k.split(".")[1]) for k in backbone if k.startswith("blocks."))
    overrides["frames"] = (backbone["pos_embed"].shape[1] - 1) // 8 * 16
    frontend = "asit32k" if sample_rate == 32000 else "ast"
    return Mapped(f"asit_{size}", overrides, backbone, frontend=frontend, dropped=dropped)


def _ssast_like(ckpt: dict) -> tuple[dict, list[str], dict]:
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    backbone = strip(state, "v.")
    if not backbone:
        raise ValueError("no keys under module.v.* (YuanGongND AST/SSAST layout).")
    dropped = [k for k in state if not k.startswith("v.") and not k.startswith("mlp_head.")]
    dropped += [f"v.{k}" for k in ("head.weight", "head.bias", "head_dist.weight", "head_dist.bias") if k in backbone]
    for k in ("head.weight", "head.bias", "head_dist.weight", "head_dist.bias"):
        backbone.pop(k, None)
    return state, dropped, backbone


def read_ssast(ckpt: dict, **_) -> Mapped:
    state, dropped, backbone = _ssast_like(ckpt)
    _, overrides = _vit_size(backbone["cls_token"].shape[-1])
    fshape, tshape = backbone["patch_embed.proj.weight"].shape[2:]
    overrides.update(patch=(fshape, tshape), stride=(fshape, tshape), depth=1 + max(int(k.split(".")[1]) for k in backbone if k.startswith("blocks.")))
    overrides["frames"] = (backbone["pos_embed"].shape[1] - 2) // (128 // fshape) * tshape
    return Mapped(f"ssast_{'frame' if fshape == 128 else 'patch'}_base", overrides, backbone, dropped=dropped)


def read_ast(ckpt: dict, **_) -> Mapped:
    state, dropped, backbone = _ssast_like(ckpt)
    _, overrides = _vit_size(backbone["cls_token"].shape[-1])
    patches = backbone["pos_embed"].shape[1] - 2
    stride = next((s for s in range(4, 17) if ((128 - 16) // s + 1) * ((1024 - 16) // s + 1) == patches), None)
    if stride is None:
        raise ValueError(f"AST positions for {patches} patches match no stride on a 128 x 1024 input.")
    overrides.update(stride=(stride, stride), depth=1 + max(int(k.split(".")[1]) for k in backbone if k.startswith("blocks.")))
    mapped = {f"backbone.{k}": v for k, v in backbone.items()}
    labels, head = [], None
    if "mlp_head.1.weight" in state:
        mapped.update({"head.0.weight": state["mlp_head.0.weight"], "head.0.bias": state["mlp_head.0.bias"],
                       "head.1.weight": state["mlp_head.1.weight"], "head.1.bias": state["mlp_head.1.bias"]})
        labels, head = [f"class_{i}" for i in range(state["mlp_head.1.weight"].shape[0])], "cls_norm"
    else:
        mapped = backbone
    return Mapped("ast_base", overrides, mapped, labels, head, dropped=dropped)


READERS: dict[str, Callable[..., Mapped]] = {
    "beats": read_beats, "atst-clip": lambda c, **k: read_atst(c, frame=False), "atst-frame": lambda c, **k: read_atst(c, frame=True),
    "asit": read_asit, "ssast": read_ssast, "ast": read_ast,
}


def convert(fmt: str, src: str | os.PathLike, out: str | os.PathLike, sample_rate: int = 32000, labels: list[str] | None = None) -> tuple[Path, Mapped]:
    """Read an official checkpoint of ``fmt`` and write it as an earmark checkpoint at ``out``."""
    if fmt not in READERS:
        raise ValueError(f"unknown checkpoint format {fmt!r}; choose one of {sorted(READERS)}.")
    mapped = READERS[fmt](safe_load(src), sample_rate=sample_rate)
    if labels:
        mapped.labels = list(labels)
    family = mapped.name.split("_")[0]
    frontend = PRESETS[mapped.frontend or {"beats": "beats", "atst": "atst"}.get(family, "ast")]
    model = build_teacher(teacher_checkpoint_meta(frontend, mapped.name, mapped.overrides, mapped.labels, "clip", mapped.head))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped.state))
    unknown = sorted(set(mapped.state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(mapped.state) if expected[k].shape != mapped.state[k].shape)
    if missing or unknown or wrong:
        raise ValueError(f"{src}: does not map onto {mapped.name} ({fmt}): missing {missing[:8]}, unknown {unknown[:8]}, "
                         f"wrong shapes {wrong[:8]}; check --from matches the file.")
    model.load_state_dict(mapped.state)
    meta = teacher_checkpoint_meta(frontend, mapped.name, mapped.overrides, mapped.labels, "clip", mapped.head,
                                   dropped_keys=len(mapped.dropped))
    meta.provenance = {"converted_from": str(src), "format": fmt, "sample_rate": model.frontend.sample_rate}
    return save_checkpoint(out, model.state_dict(), meta), mapped
