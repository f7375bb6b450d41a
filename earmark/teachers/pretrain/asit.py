"""ASiT (Atito et al.): GMML reconstruction plus local (per token) and global (cls, cross-view) self-distillation.

Two crops (6 s of 10 s, i.e. 60%) per clip; the student sees GMML-corrupted crops (blocks crossing patch
boundaries, zeros or another clip's content), the EMA teacher (momentum 0.996 -> 1) the clean ones.
Losses, summed as the paper states (the released code weights reconstruction x2, ``recon_weight``):
L1 on corrupted pixels through the light decoder; cross-entropy of the teacher's centred, sharpened
(tau_t 0.07) distribution against the student's (tau_s 0.1) on corrupted tokens (local, K=1024 head) and
on the cls token across the two views (global, K=8192 head). Weight decay follows a cosine 0.04 -> 0.4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from earmark.engine.schedules import cosine_to
from earmark.teachers.pretrain.common import EMARecipe, patchify
from earmark.teachers.pretrain.masking import gmml_mask
from earmark.teachers.registry import create_teacher
from earmark.teachers.ssl_heads import ASiTProjection, ASiTReconstruction


class ASiTNet(nn.Module):
    """Backbone plus the shared projection heads (what the EMA teacher copies)."""

    def __init__(self, backbone: nn.Module, global_out: int, local_out: int):
        super().__init__()
        self.backbone = backbone
        self.heads = ASiTProjection(backbone.embed_dim, global_out, local_out)

    def forward(self, features: torch.Tensor):
        out = self.backbone(features, fit=False)  # crops of the pretraining length, positions resized
        cls, local = self.heads(out.embedding, out.tokens)
        return out, cls, local


def _dino_ce(teacher: torch.Tensor, student: torch.Tensor, center: torch.Tensor, tau_t: float, tau_s: float) -> torch.Tensor:
    """``-sum softmax((t - c) / tau_t) log_softmax(s / tau_s)`` averaged over rows."""
    return -(F.softmax((teacher - center) / tau_t, dim=-1) * F.log_softmax(student / tau_s, dim=-1)).sum(-1).mean()


class ASiT(EMARecipe):
    """ASiT pretraining around an ``asit_*`` teacher (time-major 16x16 patches)."""

    def __init__(self, teacher: str = "asit_base", overrides: dict | None = None, total_steps: int = 1, crop: float = 0.6,
                 global_out: int = 8192, local_out: int = 1024, tau_t: float = 0.07, tau_s: float = 0.1,
                 replace_prob: float = 0.3, recon_weight: float = 1.0, center_momentum: float = 0.9):
        super().__init__()
        self.teacher_name, self.overrides = teacher, dict(overrides or {})
        self.student = ASiTNet(create_teacher(teacher, **self.overrides), global_out, local_out)
        self.reconstruct = ASiTReconstruction(self.student.backbone.embed_dim)
        self.make_ema(self.student, 0.996, total_steps)
        self.register_buffer("center_cls", torch.zeros(1, global_out))
        self.register_buffer("center_local", torch.zeros(1, local_out))
        self.crop, self.tau_t, self.tau_s = crop, tau_t, tau_s
        self.replace_prob, self.recon_weight, self.center_momentum = replace_prob, recon_weight, center_momentum
        self.total_steps = total_steps

    def ema_source(self) -> nn.Module:
        return self.student

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        super().after_step(step, optimizer)
        for group in optimizer.param_groups:
            group["weight_decay"] = cosine_to(0.04, 0.4, step, self.total_steps)

    def _crops(self, features: torch.Tensor) -> list[torch.Tensor]:
        length = max(32, int(self.crop * features.shape[-1]) // 16 * 16)
        starts = torch.randint(0, features.shape[-1] - length + 1, (2,)).tolist()
        return [features[..., s:s + length] for s in starts]

    def corrupt(self, view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GMML: masked pixels become zeros or, with ``replace_prob``, another clip's pixels; returns (input, mask)."""
        b, _, f, t = view.shape
        mask = gmml_mask(b, f, t).to(view.device).unsqueeze(1)
        other = view[torch.roll(torch.arange(b), 1)]
        replace = (torch.rand(b, 1, 1, 1, device=view.device) < self.replace_prob)
        filler = torch.where(replace, other, torch.zeros_like(view))
        return torch.where(mask, filler, view), mask

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, dict]:
        views = self._crops(features)
        recon = local = glob = 0.0
        teacher_cls, student_cls, teacher_all = [], [], []
        for view in views:
            corrupted, mask = self.corrupt(view)
            out, s_cls, s_local = self.student(corrupted)
            with torch.no_grad():
                _, t_cls, t_local = self.ema_model(view)
            grid = (view.shape[-1] // 16, view.shape[2] // 16)
            rebuilt = self.reconstruct(out.tokens, grid)
            m = mask[..., : rebuilt.shape[2], : rebuilt.shape[3]]
            recon = recon + (rebuilt - view[..., : rebuilt.shape[2], : rebuilt.shape[3]]).abs()[m].mean()
            touched = patchify(m.float()).flatten(2).amax(-1) > 0  # tokens with corrupted pixels
            local = local + _dino_ce(t_local[touched], s_local[touched], self.center_local, self.tau_t, self.tau_s)
            teacher_cls.append(t_cls)
            student_cls.append(s_cls)
            teacher_all.append(t_local[touched])
        glob = (_dino_ce(teacher_cls[0], student_cls[1], self.center_cls, self.tau_t, self.tau_s)
                + _dino_ce(teacher_cls[1], student_cls[0], self.center_cls, self.tau_t, self.tau_s)) / 2
        with torch.no_grad():  # DINO centring: an EMA of the teacher's mean output
            m = self.center_momentum
            self.center_cls.mul_(m).add_(torch.cat(teacher_cls).mean(0, keepdim=True), alpha=1 - m)
            self.center_local.mul_(m).add_(torch.cat(teacher_all).mean(0, keepdim=True), alpha=1 - m)
        loss = glob + local / 2 + self.recon_weight * recon / 2
        return loss, {"global": float(glob.detach()), "local": float(local.detach()) / 2, "recon": float(recon.detach()) / 2}

    def backbone(self) -> nn.Module:
        return self.ema_model.backbone
