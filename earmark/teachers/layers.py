"""Transformer pieces shared by every teacher family (key names follow timm / the reference code)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention (``qkv`` then ``proj``), with an optional additive bias."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def resize_grid(pos: torch.Tensor, grid: tuple[int, int], new: tuple[int, int], centre: bool = False) -> torch.Tensor:
    """Positions (1, g0 * g1, D) of a 2-D grid resized to ``new``, axis by axis: cut where shorter, bilinear where longer.

    The cut keeps the first rows/columns, or with ``centre`` those from ``g // 2 - n // 2`` on, as SSAST and AST do.
    """
    if grid == new:
        return pos
    d = pos.shape[-1]
    p = pos.reshape(1, *grid, d).permute(0, 3, 1, 2)
    for axis, (g, n) in enumerate(zip(grid, new)):
        if n < g:
            start = g // 2 - n // 2 if centre else 0
            p = p.narrow(2 + axis, start, n)
        elif n > g:
            size = (n, p.shape[3]) if axis == 0 else (p.shape[2], n)
            p = F.interpolate(p, size=size, mode="bilinear", align_corners=False)
    return p.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], d)


def match_time(frames: torch.Tensor, length: int) -> torch.Tensor:
    """Resample (B, T, C) along time to ``length`` steps by linear interpolation (frame grids of different models)."""
    if frames.shape[1] == length:
        return frames
    return F.interpolate(frames.transpose(1, 2), size=length, mode="linear", align_corners=False).transpose(1, 2)
