"""BEATs (Chen et al., ICML 2023): conv patches, a grouped positional convolution, post-LN deep-norm layers
with a gated relative-position bias shared by all layers. Module names follow microsoft/unilm so the
official checkpoints map key for key (weight norm folded). The whole family: model, variants, the ``beats``
frontend, any input length (relative positions), and the ``--from beats`` and ``--from pretrainedsed-beats`` readers."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from earmark.audio.spec import get_frontend
from earmark.teachers.convert import RELEASED_DEPTH, Mapped, block_count, fold_weight_norm
from earmark.teachers.pretrainedsed import split_wrapper, with_heads
from earmark.teachers.registry import Converter, TeacherFamily, build_config, register
from earmark.engine.outputs import ModelOutput

_SED_PREFIXES = ("model.beats.", "model.model.")  # PretrainedSED's BEATsWrapper, and the names in its release files


@dataclass(frozen=True)
class BEATsConfig:
    """The iter3 / iter3+ configuration by default."""

    conv_dim: int = 512
    dim: int = 768
    depth: int = 12
    heads: int = 12
    ffn: int = 3072
    patch: int = 16
    pos_conv: int = 128
    pos_groups: int = 16
    buckets: int = 320
    max_distance: int = 800


def relative_buckets(length: int, buckets: int, max_distance: int) -> torch.Tensor:
    """T5-style bidirectional buckets of ``key - query`` over the flattened token index, (L, L)."""
    pos = torch.arange(length)
    rel = pos[None, :] - pos[:, None]
    half = buckets // 2
    exact = half // 2
    out = (rel > 0).long() * half
    n = rel.abs()
    large = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (half - exact)).long()
    return out + torch.where(n < exact, n, large.clamp(max=half - 1))


class BEATsAttention(nn.Module):
    """Self-attention whose relative bias is gated per head by the query (gru_rel_pos)."""

    def __init__(self, cfg: BEATsConfig, has_bias_table: bool):
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.dim // cfg.heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(cfg.dim, cfg.dim) for _ in range(4))
        self.grep_linear = nn.Linear(self.head_dim, 8)
        self.grep_a = nn.Parameter(torch.ones(1, cfg.heads, 1, 1))
        if has_bias_table:
            self.relative_attention_bias = nn.Embedding(cfg.buckets, cfg.heads)

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        split = lambda t: t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        gate_a, gate_b = torch.sigmoid(self.grep_linear(q).reshape(b, self.heads, n, 2, 4).sum(-1)).chunk(2, dim=-1)
        gate = gate_a * (gate_b * self.grep_a - 1.0) + 2.0  # (B, H, L, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=gate * position_bias)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class BEATsLayer(nn.Module):
    """Post-LN with DeepNorm: ``LN(alpha x + f(x))``, alpha = (2 N)^(1/4)."""

    def __init__(self, cfg: BEATsConfig, has_bias_table: bool):
        super().__init__()
        self.alpha = (2 * cfg.depth) ** 0.25
        self.self_attn = BEATsAttention(cfg, has_bias_table)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.dim)
        self.fc1, self.fc2 = nn.Linear(cfg.dim, cfg.ffn), nn.Linear(cfg.ffn, cfg.dim)
        self.final_layer_norm = nn.LayerNorm(cfg.dim)

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor) -> torch.Tensor:
        x = self.self_attn_layer_norm(self.alpha * x + self.self_attn(x, position_bias))
        return self.final_layer_norm(self.alpha * x + self.fc2(F.gelu(self.fc1(x).float()).type_as(x)))


class BEATsEncoder(nn.Module):
    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        self.cfg = cfg
        self.pos_conv = nn.Sequential(nn.Conv1d(cfg.dim, cfg.dim, cfg.pos_conv, padding=cfg.pos_conv // 2, groups=cfg.pos_groups))
        self.layer_norm = nn.LayerNorm(cfg.dim)
        self.layers = nn.ModuleList(BEATsLayer(cfg, i == 0) for i in range(cfg.depth))

    def position_bias(self, length: int) -> torch.Tensor:
        table = self.layers[0].self_attn.relative_attention_bias
        buckets = relative_buckets(length, self.cfg.buckets, self.cfg.max_distance).to(table.weight.device)
        return table(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, H, L, L)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        conv = self.pos_conv(x.transpose(1, 2))
        if self.cfg.pos_conv % 2 == 0:
            conv = conv[:, :, :-1]  # SamePad: an even kernel adds one frame
        x = self.layer_norm(x + F.gelu(conv).transpose(1, 2))
        bias = self.position_bias(x.shape[1])
        layers = []
        for layer in self.layers:
            x = layer(x, bias)
            layers.append(x)
        return x, layers


class BEATs(nn.Module):
    """BEATs over ``beats`` features (B, 1, 128, frames); 10 s give 62 x 8 = 496 tokens."""

    def __init__(self, cfg: BEATsConfig = BEATsConfig(), frontend: str = "beats"):
        super().__init__()
        self.cfg, self.frontend, self.embed_dim = cfg, get_frontend(frontend), cfg.dim
        self.patch_embedding = nn.Conv2d(1, cfg.conv_dim, cfg.patch, cfg.patch, bias=False)
        self.layer_norm = nn.LayerNorm(cfg.conv_dim)
        self.post_extract_proj = nn.Linear(cfg.conv_dim, cfg.dim)
        self.encoder = BEATsEncoder(cfg)

    @property
    def frame_hop_seconds(self) -> float:
        return self.cfg.patch * self.frontend.hop_seconds

    @property
    def layer_modules(self) -> nn.ModuleList:
        """The layers whose outputs layer-wise heads weigh."""
        return self.encoder.layers

    def forward(self, features: torch.Tensor) -> ModelOutput:
        x = self.patch_embedding(features.transpose(2, 3))  # (B, C, T', F'): the (time, mel) image
        b, c, t, f = x.shape
        x = self.post_extract_proj(self.layer_norm(x.reshape(b, c, t * f).transpose(1, 2)))
        tokens, layers = self.encoder(x)
        return ModelOutput(embedding=tokens.mean(1), tokens=tokens, frame_embedding=tokens.reshape(b, t, f, -1).mean(2),
                           layers=layers, frame_hop_seconds=self.frame_hop_seconds)


def _looks_like(ckpt: dict) -> bool:
    return isinstance(ckpt.get("model"), dict) and any(k.endswith("self_attn.grep_a") for k in ckpt["model"])


def convert_official(ckpt: dict, **_: Any) -> Mapped:
    """microsoft/unilm ``{cfg, model, label_dict?}`` -> ``beats_base`` with the file's cfg (weight norm folded, table shared)."""
    cfg, state = ckpt.get("cfg", {}), fold_weight_norm(ckpt["model"])
    for flag, want in (("deep_norm", True), ("relative_position_embedding", True), ("gru_rel_pos", True), ("layer_norm_first", False)):
        if cfg.get(flag, want) != want:
            raise ValueError(f"its cfg sets {flag}={cfg.get(flag)}, which earmark does not implement (it implements BEATs iter3).")
    overrides = {"conv_dim": cfg.get("embed_dim", 512), "dim": cfg.get("encoder_embed_dim", 768), "depth": cfg.get("encoder_layers", 12),
                 "heads": cfg.get("encoder_attention_heads", 12), "ffn": cfg.get("encoder_ffn_embed_dim", 3072),
                 "patch": cfg.get("input_patch_size", 16), "pos_conv": cfg.get("conv_pos", 128), "pos_groups": cfg.get("conv_pos_groups", 16),
                 "buckets": cfg.get("num_buckets", 320), "max_distance": cfg.get("max_distance", 800)}
    block_count(state, "encoder.layers.", overrides["depth"], "its cfg has")
    shared = state.get("encoder.layers.0.self_attn.relative_attention_bias.weight")
    for key in [k for k in state if re.match(r"encoder\.layers\.[1-9]\d*\.self_attn\.relative_attention_bias\.weight", k)]:
        if not torch.equal(state.pop(key), shared):
            raise ValueError(f"{key} differs from layer 0's table, but BEATs shares one relative-position table across layers.")
    labels, head = [], None
    if "predictor.weight" in state:
        label_dict = ckpt.get("label_dict") or {}
        labels = [str(label_dict.get(i, f"class_{i}")) for i in range(state["predictor.weight"].shape[0])]
        state = {**{f"backbone.{k}": v for k, v in state.items() if not k.startswith("predictor.")},
                 "head.weight": state["predictor.weight"], "head.bias": state["predictor.bias"]}
        head = "linear"  # token-wise linear then mean == linear on the mean token
    return Mapped("beats_base", overrides, state, labels, head, objective="detect")  # AudioSet heads: sigmoid per class


def _looks_like_pretrainedsed(ckpt: dict) -> bool:
    return any(p + "encoder.layers.0.self_attn.grep_a" in ckpt for p in _SED_PREFIXES)


def _cfg_from_shapes(state: dict) -> dict[str, Any]:
    """The BEATs cfg a state dict's shapes imply (PretrainedSED stores none; it builds the iter3 config)."""
    dim, conv_dim = state["post_extract_proj.weight"].shape
    pos = next(state[k] for k in ("encoder.pos_conv.0.weight", "encoder.pos_conv.0.weight_v",
                                  "encoder.pos_conv.0.parametrizations.weight.original1") if k in state)
    return {"embed_dim": conv_dim, "encoder_embed_dim": dim, "encoder_attention_heads": state["encoder.layers.0.self_attn.grep_a"].shape[1],
            "encoder_ffn_embed_dim": state["encoder.layers.0.fc1.weight"].shape[0], "input_patch_size": state["patch_embedding.weight"].shape[-1],
            "conv_pos": pos.shape[-1], "conv_pos_groups": dim // pos.shape[1],
            "num_buckets": state["encoder.layers.0.self_attn.relative_attention_bias.weight"].shape[0],
            "encoder_layers": RELEASED_DEPTH if dim == 768 else 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layers."))}


def convert_pretrainedsed(ckpt: dict, **_: Any) -> Mapped:
    """PretrainedSED's ``BEATsWrapper`` (``model.beats.*``, the release's ``model.model.*``) with its heads."""
    prefix = next(p for p in _SED_PREFIXES if p + "encoder.layers.0.self_attn.grep_a" in ckpt)
    backbone, heads, dropped = split_wrapper(ckpt, prefix)
    mapped = convert_official({"cfg": _cfg_from_shapes(backbone), "model": backbone})
    mapped.dropped += dropped
    return with_heads(mapped, heads, "tokens")  # all 62 x 8 tokens, time-major, as the wrapper hands them on


def _build(args: dict[str, Any]) -> BEATs:
    args = dict(args)
    frontend = args.pop("frontend", "beats")
    return BEATs(build_config(BEATsConfig, args), frontend)


register(TeacherFamily(
    "beats", _build,
    variants={
        "beats_base": {"frontend": "beats"},
        "beats_tiny": dict(frontend="beats", conv_dim=32, dim=64, depth=2, heads=4, ffn=128, pos_conv=16, pos_groups=4),
    },
    formats={"beats": Converter(convert_official, _looks_like, "microsoft/unilm {cfg, model, label_dict?}"),
             "pretrainedsed-beats": Converter(convert_pretrainedsed, _looks_like_pretrainedsed,
                                              "PretrainedSED BEATs_{ssl,weak,strong_1}.pt (model.model.* / model.beats.*, strong/weak heads)")},
))
