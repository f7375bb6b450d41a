"""ACM-SSKD (Gong et al., Electronics 2024): multi-dimensional masking SSL on the audio feature transformer.

Three views of each clip go through the same transformer: the raw patches, intra-patch-masked patches
(time, frequency or joint bands inside up to half of the patches) and, MAE-style, the 25% of patches left
visible by inter-patch masking sampled with the HOG prior of eq. (1). Losses (eq. 10):
``alpha (restore + mse) + beta kl + contrast`` with restore the HOG-weighted reconstruction MSE of the
masked patches through the light decoder (eqs. 2-3), mse and kl between the masked views' features and the
raw view's (eqs. 4-7), and an InfoNCE contrast on mean-pooled features, the raw view as positive (eqs. 8-9).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from earmark.teachers.pretrain.common import Recipe, patchify, unpatchify
from earmark.teachers.pretrain.masking import hog_prior, intra_patch_mask, random_patch_mask
from earmark.teachers.registry import create_teacher
from earmark.teachers.ssl_heads import LightDecoder


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float) -> torch.Tensor:
    """Each anchor's positive is the same clip's raw view; the batch's other clips are negatives (eqs. 8-9)."""
    logits = F.normalize(anchor, dim=-1) @ F.normalize(positive, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(anchor), device=anchor.device))


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """The KD stage (eqs. 11-13): ``CE(F_cls, softmax(F_teacher)) + gamma MSE(F_cls, F_teacher)``."""
    ce = -(F.softmax(teacher_logits, -1) * F.log_softmax(student_logits, -1)).sum(-1).mean()
    return ce + gamma * F.mse_loss(student_logits, teacher_logits)


class ACMSSKD(Recipe):
    """ACM-SSKD pretraining around an ``acmsskd_*`` teacher."""

    def __init__(self, teacher: str = "acmsskd_base", overrides: dict | None = None, total_steps: int = 1, inter_ratio: float = 0.75,
                 alpha: float = 1.0, beta: float = 1.0, temperature: float = 0.1):
        super().__init__()
        self.teacher_name, self.overrides = teacher, dict(overrides or {})
        self.encoder = create_teacher(teacher, **self.overrides)
        self.decoder = LightDecoder(self.encoder.embed_dim, tokens=self.encoder.pos_embed.shape[1])
        self.inter_ratio, self.alpha, self.beta, self.temperature = inter_ratio, alpha, beta, temperature

    def _encode_visible(self, features: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        tokens, _ = self.encoder.embed_patches(features)
        visible = tokens.gather(1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        return self.encoder.encode(visible)[0]

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, dict]:
        patches = patchify(features)  # (B, N, 16, 16), the encoder's token order
        b, n = patches.shape[:2]
        grid = (features.shape[-1] // 16, features.shape[2] // 16)
        raw = self.encoder(features).tokens
        intra = intra_patch_mask(b, n, 16, 16).to(features.device)
        intra_feats = self.encoder(unpatchify(patches.masked_fill(intra, 0.0), grid, features.shape[-1])).tokens
        prior = hog_prior(patches)
        masked = random_patch_mask(b, n, self.inter_ratio, weights=prior.detach().cpu()).to(features.device)
        keep = (~masked).nonzero()[:, 1].reshape(b, -1)
        visible = self._encode_visible(features, keep)
        rebuilt = self.decoder(visible, keep, n)  # (B, N, 256)
        error = ((rebuilt - patches.flatten(2)) ** 2).mean(-1)
        restore = (prior * error * masked).sum() / (prior * masked).sum().clamp_min(1e-6)  # eqs. 2-3
        target = raw.detach()
        raw_visible = target.gather(1, keep.unsqueeze(-1).expand(-1, -1, target.shape[-1]))
        mse = F.mse_loss(intra_feats, target) + F.mse_loss(visible, raw_visible)  # eqs. 4, 6
        kl = (F.kl_div(F.log_softmax(intra_feats, -1), F.log_softmax(target, -1), log_target=True, reduction="batchmean")
              + F.kl_div(F.log_softmax(visible, -1), F.log_softmax(raw_visible, -1), log_target=True, reduction="batchmean")) / n  # eqs. 5, 7
        pooled = raw.mean(1)
        contrast = (info_nce(intra_feats.mean(1), pooled, self.temperature) + info_nce(visible.mean(1), pooled, self.temperature)) / 2
        loss = self.alpha * (restore + mse) + self.beta * kl + contrast  # eq. 10
        return loss, {name: float(value.detach()) for name, value in (("restore", restore), ("mse", mse), ("kl", kl), ("contrast", contrast))}

    def backbone(self) -> nn.Module:
        return self.encoder
