"""BEATs (Chen et al., ICML 2023): conv patches, a grouped positional convolution, post-LN deep-norm layers
with a gated relative-position bias shared by all layers. Module names follow microsoft/unilm so the
official checkpoints map key for key (weight norm folded)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from earmark.audio.spec import get_frontend
from earmark.teachers.layers import TeacherOutput


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

    def forward(self, features: torch.Tensor) -> TeacherOutput:
        x = self.patch_embedding(features.transpose(2, 3))  # (B, C, T', F'): the (time, mel) image
        b, c, t, f = x.shape
        x = self.post_extract_proj(self.layer_norm(x.reshape(b, c, t * f).transpose(1, 2)))
        tokens, layers = self.encoder(x)
        return TeacherOutput(tokens.mean(1), tokens, tokens.reshape(b, t, f, -1).mean(2), self.frame_hop_seconds, layers)
