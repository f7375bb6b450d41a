"""Pre-LN ViT teachers over log-mel patches: ASiT, SSAST / AST, ACM-SSKD's audio feature transformer, ATST-Clip/Frame.

They differ in how patches become tokens (``layout``), in their special tokens and pooling:
- ``time_major`` (ASiT, ACM-SSKD): 16x16 patches of the (time, mel) image, tokens ``t * F' + f``;
- ``freq_major`` (AST, SSAST): (fshape x tshape) patches with strides, tokens ``f * T' + t``;
- ``atst``: all 64 mel bins x 4 frames through a linear layer, one token per 40 ms.

Input length follows the family's reference pipeline (``length``): ``fit`` pads features to the trained
``frames`` with the value of a zero log-mel bin (AST, SSAST and ASiT pad fbank with zeros before normalising)
and cuts longer input to its first ``frames``; ``resize`` cuts (``crop``: ``start`` or ``centre``, as SSAST / AST
cut their grids) or interpolates the position grid to the input; ``any`` is ATST's (positions taken from the start).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from earmark.audio.spec import get_frontend
from earmark.engine.outputs import ModelOutput
from earmark.nn import Block
from earmark.teachers.layers import resize_grid


@dataclass(frozen=True)
class ViTConfig:
    """A ViT teacher's shape; ``frames`` is the length its positions were learned for."""

    dim: int = 768
    depth: int = 12
    heads: int = 12
    layout: str = "time_major"  # time_major | freq_major | atst
    patch: tuple[int, int] = (16, 16)  # (mel, time) extent of a patch
    stride: tuple[int, int] = (16, 16)
    n_mels: int = 128
    frames: int = 1024
    tokens: int = 1  # special tokens: 0, 1 (cls) or 2 (cls + distillation)
    pool: str = "cls"  # cls | mean | cls_dist
    qkv_bias: bool = True
    eps: float = 1e-6
    extra_mlp: bool = False  # ACM-SSKD: 768 -> 1536 -> 768 after the last layer
    length: str = "resize"  # fit | resize | any: how input of another length is met (module docstring)
    crop: str = "start"  # which part of a longer position grid ``resize`` keeps: start | centre
    frontend: str | dict = "ast"  # a preset name or a FrontendSpec dict (a converted checkpoint records its own)


class PatchLinear(nn.Module):
    """ATST's patch embedding: each 4-frame slice of all mel bins through one linear layer."""

    def __init__(self, n_mels: int, frames: int, dim: int):
        super().__init__()
        self.frames = frames
        self.patch_embed = nn.Linear(n_mels * frames, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, f, t = x.shape
        t = t - t % self.frames
        x = x[..., :t].reshape(b, f, t // self.frames, self.frames).permute(0, 2, 1, 3)  # vector index = mel * 4 + frame
        return self.patch_embed(x.reshape(b, t // self.frames, f * self.frames))


class PatchConv(nn.Module):
    """Conv patch embedding (``proj``); the time-major layout convolves the (time, mel) image as ASiT does."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.time_major = cfg.layout == "time_major"
        kernel = cfg.patch[::-1] if self.time_major else cfg.patch
        stride = cfg.stride[::-1] if self.time_major else cfg.stride
        self.proj = nn.Conv2d(1, cfg.dim, kernel, stride)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if self.time_major:
            x = x.transpose(2, 3)
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])


class ViTTeacher(nn.Module):
    """A pre-LN ViT over features (B, 1, n_mels, frames) returning a ``ModelOutput``."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        if cfg.length not in ("fit", "resize", "any") or cfg.crop not in ("start", "centre"):
            raise ValueError(f"length {cfg.length!r} / crop {cfg.crop!r}: choose length fit, resize or any and crop start or centre.")
        self.cfg = cfg
        self.frontend = get_frontend(cfg.frontend)
        self.embed_dim = cfg.dim
        if cfg.layout == "atst":
            self.patch_embed = PatchLinear(cfg.n_mels, cfg.patch[1], cfg.dim)
            self.grid = (cfg.frames // cfg.patch[1], 1)
        else:
            self.patch_embed = PatchConv(cfg)
            self.grid = self._grid(cfg.n_mels, cfg.frames)
        if cfg.tokens >= 1:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        if cfg.tokens == 2:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        # ATST keeps slot 0 of its positions for the cls token even in the frame model (which has none).
        self.pos_slots = max(cfg.tokens, 1 if cfg.layout == "atst" else 0)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pos_slots + self.grid[0] * self.grid[1], cfg.dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, 4.0, cfg.qkv_bias, cfg.eps) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        if cfg.extra_mlp:
            self.extra_mlp = nn.Sequential(nn.Linear(cfg.dim, 2 * cfg.dim), nn.GELU(), nn.Linear(2 * cfg.dim, cfg.dim))

    def _grid(self, n_mels: int, frames: int) -> tuple[int, int]:
        (pf, pt), (sf, st) = self.cfg.patch, self.cfg.stride
        f, t = (n_mels - pf) // sf + 1, (frames - pt) // st + 1
        return (t, f) if self.cfg.layout == "time_major" else (f, t)

    @property
    def frame_hop_seconds(self) -> float:
        return self._time_step * self.frontend.hop_seconds

    @property
    def _time_step(self) -> int:
        return self.cfg.patch[1] if self.cfg.layout == "atst" else self.cfg.stride[1]

    @property
    def layer_modules(self) -> nn.ModuleList:
        """The blocks whose outputs layer-wise heads weigh."""
        return self.blocks

    def fit_length(self, features: torch.Tensor) -> torch.Tensor:
        """Under ``length="fit"``: features padded with a zero log-mel bin (normalised) or cut to the trained frames."""
        frames = features.shape[-1]
        if self.cfg.length != "fit" or frames == self.cfg.frames:
            return features
        if frames > self.cfg.frames:
            return features[..., : self.cfg.frames]
        silence = -self.frontend.norm_mean / self.frontend.norm_scale  # (0 - mean) / scale
        return F.pad(features, (0, self.cfg.frames - frames), value=silence)

    def embed_patches(self, features: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch tokens with positions added (no special tokens), and their grid."""
        if self.cfg.layout == "atst":
            x = self.patch_embed(features)
            grid = (x.shape[1], 1)
            pos = self.pos_embed[:, self.pos_slots:]
            if grid[0] > pos.shape[1]:
                raise ValueError(f"ATST positions cover {pos.shape[1]} tokens ({pos.shape[1] * 0.04:.0f} s); chunk longer input.")
            return x + pos[:, : grid[0]], grid
        x, grid = self.patch_embed(features)
        pos = resize_grid(self.pos_embed[:, self.pos_slots:], self.grid, grid, centre=self.cfg.crop == "centre")
        return x + pos, grid

    def specials(self, batch: int) -> list[torch.Tensor]:
        """The cls (and distillation) tokens with their positions."""
        tokens = [getattr(self, name) for name in ("cls_token", "dist_token")[: self.cfg.tokens]]
        return [t.expand(batch, -1, -1) + self.pos_embed[:, i:i + 1] for i, t in enumerate(tokens)]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the blocks on a token sequence; returns normalised tokens and each block's output."""
        layers = []
        for block in self.blocks:
            x = block(x)
            layers.append(x)
        if self.cfg.extra_mlp:
            x = x + self.extra_mlp(x)
        return self.norm(x), layers

    def forward(self, features: torch.Tensor, fit: bool = True) -> ModelOutput:
        """The outputs for ``features``; ``fit=False`` (pretraining on fixed crops) skips the length policy."""
        frames = features.shape[-1]
        if fit:
            features = self.fit_length(features)
        patches, grid = self.embed_patches(features)
        tokens, layers = self.encode(torch.cat([*self.specials(features.shape[0]), patches], dim=1))
        special, body = tokens[:, : self.cfg.tokens], tokens[:, self.cfg.tokens:]
        clip = {"cls": special[:, 0] if self.cfg.tokens else body.mean(1), "mean": body.mean(1),
                "cls_dist": special.mean(1)}[self.cfg.pool]
        b, _, d = body.shape
        if self.cfg.layout == "freq_major":
            frame_embedding = body.reshape(b, grid[0], grid[1], d).mean(1)
        else:
            frame_embedding = body.reshape(b, grid[0], grid[1], d).mean(2)
        frame_embedding = frame_embedding[:, : -(-frames // self._time_step)]  # steps that start inside the input, not in padding
        layers = [layer[:, self.cfg.tokens:] for layer in layers]
        return ModelOutput(embedding=clip, tokens=body, frame_embedding=frame_embedding, layers=layers,
                           frame_hop_seconds=self.frame_hop_seconds)
