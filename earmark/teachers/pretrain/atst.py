"""ATST-Frame and ATST-Clip (Li et al.): BYOL between a masked student and an EMA teacher.

Frame: both views of a clip (independently augmented), block masking (ratio 0.65, blocks of 5 tokens)
on the student, frame outputs compared at the masked positions, symmetric. Clip: two segment crops,
the student's cls through a predictor against the teacher's. EMA covers the encoder and projector.
"""

from __future__ import annotations

import torch
from torch import nn

from earmark.teachers.pretrain.common import EMARecipe, byol_loss, projector
from earmark.teachers.pretrain.masking import block_mask_1d
from earmark.teachers.registry import create_teacher


class Online(nn.Module):
    """The student's encoder and projector (the EMA teacher copies exactly these)."""

    def __init__(self, encoder: nn.Module, hidden: int, out: int):
        super().__init__()
        self.encoder = encoder
        self.projector = projector(encoder.embed_dim, hidden, out)


def augment(features: torch.Tensor) -> torch.Tensor:
    """A light frame-wise augmentation: random gain and a random shift of the normalised log-mel."""
    b = features.shape[0]
    gain = 1 + 0.1 * torch.randn(b, 1, 1, 1, device=features.device)
    return features * gain + 0.05 * torch.randn(b, 1, 1, 1, device=features.device)


class ATSTFrame(EMARecipe):
    """ATST-Frame pretraining around an ``atst_frame_*`` teacher."""

    def __init__(self, teacher: str = "atst_frame_base", overrides: dict | None = None, total_steps: int = 1, ema: float | None = None,
                 mask_ratio: float = 0.65, mask_block: int = 5, hidden: int = 4096, out: int = 256):
        super().__init__()
        self.teacher_name, self.overrides = teacher, dict(overrides or {})
        self.online = Online(create_teacher(teacher, **self.overrides), hidden, out)
        self.predictor = projector(out, hidden, out)
        self.mask_embed = nn.Parameter(torch.zeros(1, 1, self.online.encoder.embed_dim))
        self.mask_ratio, self.mask_block = mask_ratio, mask_block
        self.make_ema(self.online, ema if ema is not None else (0.9996 if "base" in teacher else 0.997), total_steps)

    def ema_source(self) -> nn.Module:
        return self.online

    def _frames(self, net: Online, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        tokens, _ = net.encoder.embed_patches(features)
        if mask is not None:
            tokens = torch.where(mask.unsqueeze(-1), self.mask_embed.expand_as(tokens), tokens)
        return net.encoder.encode(tokens)[0]

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, dict]:
        views = augment(features), augment(features)
        length = self.online.encoder.embed_patches(features[:1])[0].shape[1]
        loss = 0.0
        for student_view, teacher_view in (views, views[::-1]):
            mask = block_mask_1d(features.shape[0], length, self.mask_ratio, self.mask_block).to(features.device)
            online = self._frames(self.online, student_view, mask)[mask]
            p = self.predictor(self.online.projector(online))
            with torch.no_grad():
                z = self.ema_model.projector(self._frames(self.ema_model, teacher_view, None)[mask])
            loss = loss + byol_loss(p, z)
        return loss / 2, {"mask_ratio": float(mask.float().mean())}

    def backbone(self) -> nn.Module:
        return self.ema_model.encoder


class ATSTClip(ATSTFrame):
    """ATST-Clip: two crops of the clip (a 60% segment each), cls outputs compared through the predictor."""

    def __init__(self, teacher: str = "atst_clip_base", overrides: dict | None = None, total_steps: int = 1, ema: float | None = None,
                 crop: float = 0.6, hidden: int = 4096, out: int = 256):
        super().__init__(teacher, overrides, total_steps, ema if ema is not None else (0.9995 if "base" in teacher else 0.99), hidden=hidden, out=out)
        self.crop = crop
        self.mask_embed.requires_grad_(False)  # the clip objective masks nothing (and DDP must not wait for its gradient)

    def _crop(self, features: torch.Tensor) -> torch.Tensor:
        length = max(4, int(self.crop * features.shape[-1]))
        start = int(torch.randint(0, features.shape[-1] - length + 1, (1,)))
        return augment(features[..., start:start + length])

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, dict]:
        views = self._crop(features), self._crop(features)
        loss = 0.0
        for a, b in (views, views[::-1]):
            p = self.predictor(self.online.projector(self.online.encoder(a).embedding))
            with torch.no_grad():
                z = self.ema_model.projector(self.ema_model.encoder(b).embedding)
            loss = loss + byol_loss(p, z)
        return loss / 2, {}
