"""BEATs-style masked acoustic-token prediction (Chen et al.), iteration 1.

A frozen random-projection tokenizer maps each 16x16 patch to the nearest of ``codes`` random unit vectors;
the encoder sees 75% of its patch embeddings replaced by a mask embedding and predicts the discrete labels
of the masked patches (cross-entropy). Later iterations train a tokenizer to predict the previous
iteration's teacher; that step is not built yet (see docs/pretraining.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from earmark.teachers.pretrain.common import Recipe, patchify
from earmark.teachers.pretrain.masking import random_patch_mask
from earmark.teachers.registry import create_teacher


class RandomProjectionTokenizer(nn.Module):
    """Frozen: label = argmax over codes of cos(P x, c); the projection and codebook are fixed at creation."""

    def __init__(self, patch_pixels: int = 256, dim: int = 256, codes: int = 1024, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("projection", torch.randn(patch_pixels, dim, generator=g) / patch_pixels**0.5)
        self.register_buffer("codebook", F.normalize(torch.randn(codes, dim, generator=g), dim=-1))

    @torch.no_grad()
    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        z = F.normalize(patches.flatten(2) @ self.projection, dim=-1)
        return (z @ self.codebook.T).argmax(-1)


class BEATsIter1(Recipe):
    """Iteration 1 around a ``beats_*`` teacher."""

    def __init__(self, teacher: str = "beats_base", overrides: dict | None = None, total_steps: int = 1, ratio: float = 0.75, codes: int = 1024):
        super().__init__()
        self.teacher_name, self.overrides = teacher, dict(overrides or {})
        self.encoder = create_teacher(teacher, **self.overrides)
        self.tokenizer = RandomProjectionTokenizer(codes=codes)
        self.mask_embed = nn.Parameter(torch.zeros(self.encoder.cfg.dim))
        self.predictor = nn.Linear(self.encoder.cfg.dim, codes)
        self.ratio = ratio

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, dict]:
        enc = self.encoder
        x = enc.patch_embedding(features.transpose(2, 3))
        b, c, t, f = x.shape
        x = enc.post_extract_proj(enc.layer_norm(x.reshape(b, c, t * f).transpose(1, 2)))
        mask = random_patch_mask(b, t * f, self.ratio).to(x.device)
        x = torch.where(mask.unsqueeze(-1), self.mask_embed.expand_as(x), x)
        tokens, _ = enc.encoder(x)
        labels = self.tokenizer(patchify(features)[:, : t * f])
        logits = self.predictor(tokens[mask])
        loss = F.cross_entropy(logits, labels[mask])
        return loss, {"accuracy": float((logits.argmax(-1) == labels[mask]).float().mean())}

    def backbone(self) -> nn.Module:
        return self.encoder
