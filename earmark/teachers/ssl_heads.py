"""Pretraining heads that belong to the teachers: ASiT's projection and reconstruction heads, ACM-SSKD's light decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from earmark.nn import Block


class WeightNormLinear(nn.Module):
    """Bias-free ``W = g v / ||v||`` with g fixed to 1 (DINO's last layer), stored folded-ready as ``weight_v``."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out, dim))
        nn.init.trunc_normal_(self.weight_v, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, F.normalize(self.weight_v, dim=1))


class ASiTProjection(nn.Module):
    """ASiT's shared MLP D -> 2048 -> 2048 -> 256 (GELU), L2-normalised, into a global (cls, K=8192) and a local (K=1024) layer."""

    def __init__(self, dim: int, global_out: int = 8192, local_out: int = 1024, hidden: int = 2048, bottleneck: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, bottleneck))
        self.cls_layer = WeightNormLinear(bottleneck, global_out)
        self.data_layer = WeightNormLinear(bottleneck, local_out)

    def forward(self, cls: torch.Tensor, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.cls_layer(F.normalize(self.mlp(cls), dim=-1)),
                self.data_layer(F.normalize(self.mlp(patches), dim=-1)))


class ASiTReconstruction(nn.Module):
    """ASiT's light decoder: MLP D -> 768 -> 768 -> 128 (GELU) per token, a transposed conv back to 16x16 pixels."""

    def __init__(self, dim: int, patch: int = 16, hidden: int = 768, channels: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, channels), nn.GELU())
        self.convTrans = nn.ConvTranspose2d(channels, 1, patch, patch)  # noqa: N815 - the official key name

    def forward(self, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Patch tokens (B, T' * F', D) in time-major order -> a (B, 1, n_mels, frames) spectrogram."""
        b = patches.shape[0]
        x = self.mlp(patches).transpose(1, 2).reshape(b, -1, *grid)  # (B, C, T', F')
        return self.convTrans(x).transpose(2, 3)


class LightDecoder(nn.Module):
    """ACM-SSKD's MAE-style decoder: encoder tokens and mask tokens through two small blocks back to patch pixels."""

    def __init__(self, dim: int, patch_pixels: int = 256, decoder_dim: int = 384, depth: int = 2, heads: int = 6, tokens: int = 512):
        super().__init__()
        self.embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, decoder_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(decoder_dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.pred = nn.Linear(decoder_dim, patch_pixels)

    def forward(self, visible: torch.Tensor, keep: torch.Tensor, total: int) -> torch.Tensor:
        """``visible`` (B, K, D) encoded tokens at indices ``keep`` (B, K) of ``total`` -> pixels (B, total, patch_pixels)."""
        b = visible.shape[0]
        x = self.mask_token.expand(b, total, -1).clone()
        x = x.scatter(1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]), self.embed(visible))
        x = x + self.pos_embed[:, :total]
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))
