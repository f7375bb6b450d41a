"""BEATs-style masked acoustic-token prediction (Chen et al.).

Iteration 1: a frozen random-projection tokenizer maps each 16x16 patch to the nearest of ``codes`` random
unit vectors; the encoder sees 75% of its patch embeddings replaced by a mask embedding and predicts the
discrete labels of the masked patches (cross-entropy).
Later iterations (``BEATsIterN``): first a tokenizer is trained by distillation — its quantized patch codes,
through a light estimator, must predict the previous iteration's teacher features (cosine), with a VQ-VAE
codebook on unit vectors — then it is frozen and labels the patches for the same masked prediction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from earmark.engine import load_model
from earmark.nn import Block
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


class AcousticTokenizer(nn.Module):
    """Patches -> a small transformer -> unit vectors -> the nearest of ``codes`` unit code vectors."""

    def __init__(self, patch_pixels: int = 256, dim: int = 128, depth: int = 2, heads: int = 4, codes: int = 1024, code_dim: int = 32):
        super().__init__()
        self.embed = nn.Linear(patch_pixels, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.project = nn.Linear(dim, code_dim)
        self.codebook = nn.Parameter(F.normalize(torch.randn(codes, code_dim), dim=-1))

    def encode(self, patches: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(self.blocks(self.embed(patches.flatten(2)))), dim=-1)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Straight-through quantized vectors, their codes, and the VQ-VAE codebook + 0.25 commitment loss."""
        book = F.normalize(self.codebook, dim=-1)
        codes = (z @ book.T).argmax(-1)
        q = book[codes]
        vq = F.mse_loss(q, z.detach()) + 0.25 * F.mse_loss(z, q.detach())
        return z + (q - z).detach(), codes, vq

    @torch.no_grad()
    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.quantize(self.encode(patches))[1]


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
        return self.masked_prediction(features)

    def masked_prediction(self, features: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Predict the tokenizer's labels of 75% masked patches."""
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


class BEATsIterN(BEATsIter1):
    """Iteration n >= 2: the first ``tokenizer_steps`` train a tokenizer against the ``previous`` teacher, the rest
    train the encoder on its labels (both in one run, so one command and one resumable state)."""

    find_unused = True  # each phase leaves the other phase's parameters without gradients

    def __init__(self, teacher: str = "beats_base", overrides: dict | None = None, total_steps: int = 1, previous: str = "",
                 tokenizer_steps: int | None = None, ratio: float = 0.75, codes: int = 1024):
        super().__init__(teacher, overrides, total_steps, ratio, codes)
        if not previous:
            raise ValueError("BEATs iterations after the first need the previous teacher: pass recipe argument previous=CHECKPOINT.")
        self.previous, _ = load_model(previous, "teacher")
        self.previous.requires_grad_(False)
        self.tokenizer = AcousticTokenizer(codes=codes)
        self.estimator = nn.Sequential(nn.Linear(32, 128), Block(128, 4), nn.Linear(128, self.previous.embed_dim))
        self.tokenizer_steps = tokenizer_steps if tokenizer_steps is not None else total_steps // 2
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        self.step.fill_(step)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if int(self.step) >= self.tokenizer_steps:
            return self.masked_prediction(features)
        patches = patchify(features)
        quantized, codes, vq = self.tokenizer.quantize(self.tokenizer.encode(patches))
        with torch.no_grad():
            target = self.previous.eval()(features).tokens[:, : patches.shape[1]]
        similarity = F.cosine_similarity(self.estimator(quantized), target, dim=-1).mean()
        return 1 - similarity + vq, {"teacher_cosine": float(similarity.detach()), "codes_used": float(codes.unique().numel())}
