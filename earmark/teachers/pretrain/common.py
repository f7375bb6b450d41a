"""Pieces the recipes share: the recipe interface, BYOL projector/predictor, patch unfolding, the BYOL loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from earmark.engine.ema import EMA


class Recipe(nn.Module):
    """A self-supervised objective around a teacher backbone; ``forward(features) -> (loss, metrics)``."""

    teacher_name: str
    overrides: dict

    def backbone(self) -> nn.Module:
        """The network saved as the pretrained teacher (the EMA teacher where the recipe has one)."""
        raise NotImplementedError

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        """Per-step updates outside the gradient (EMA, schedules of weight decay)."""


def projector(dim: int, hidden: int = 4096, out: int = 256) -> nn.Sequential:
    """BYOL's MLP: Linear -> BatchNorm -> ReLU -> Linear."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


def byol_loss(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``2 - 2 cos(p, z)`` averaged over rows (Grill et al.)."""
    return (2 - 2 * F.cosine_similarity(online, target.detach(), dim=-1)).mean()


def patchify(features: torch.Tensor, patch: int = 16) -> torch.Tensor:
    """(B, 1, F, T) -> (B, N, p, p) patches of the (time, mel) image in time-major order (as the time-major teachers)."""
    x = features[:, 0].transpose(1, 2)  # (B, T, F)
    b, t, f = x.shape
    t, f = t - t % patch, f - f % patch
    x = x[:, :t, :f].reshape(b, t // patch, patch, f // patch, patch).permute(0, 1, 3, 2, 4)
    return x.reshape(b, -1, patch, patch)


def unpatchify(patches: torch.Tensor, grid: tuple[int, int], frames: int) -> torch.Tensor:
    """Inverse of ``patchify`` back to (B, 1, F, frames), zero-padding the cut tail."""
    b, _, p, _ = patches.shape
    x = patches.reshape(b, grid[0], grid[1], p, p).permute(0, 1, 3, 2, 4).reshape(b, grid[0] * p, grid[1] * p)
    return F.pad(x.transpose(1, 2), (0, frames - grid[0] * p)).unsqueeze(1)


class EMARecipe(Recipe):
    """A recipe whose teacher is an EMA of the student (momentum cosine from ``m0`` to 1)."""

    def make_ema(self, online: nn.Module, m0: float, total_steps: int) -> None:
        self.ema = EMA(online, m0, 1.0, total_steps)
        self.ema_model = self.ema.model  # registered, so it is saved, resumed and moved with the recipe

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        self.ema.update(self.ema_source(), step)

    def ema_source(self) -> nn.Module:
        raise NotImplementedError
