"""Knowledge-distillation losses: DCASE soft-label KD, multi-label BCE KD, feature regression, frame-level KD."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from earmark.nn import match_time


def soft_kd(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, temperature: float = 2.0,
            hard_weight: float = 0.02, reduction: str = "mean") -> torch.Tensor:
    """``w CE(s, y) + (1 - w) T^2 KL(softmax(t/T) || softmax(s/T))`` (CP-JKU / TF-SepNet DCASE recipe).

    ``reduction="mean"`` averages the KL over batch and classes as their KLDivLoss(log_target=True)
    does; ``"batchmean"`` sums over classes and averages over the batch (the textbook KL).
    """
    hard = F.cross_entropy(student, target.argmax(dim=1) if target.dim() == 2 else target)
    log_s, log_t = F.log_softmax(student / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1)
    pointwise = log_t.exp() * (log_t - log_s)
    if reduction not in ("mean", "batchmean"):
        raise ValueError(f"KL reduction {reduction!r} is not 'mean' or 'batchmean'.")
    kl = pointwise.mean() if reduction == "mean" else pointwise.sum() / student.shape[0]
    return hard_weight * hard + (1 - hard_weight) * temperature**2 * kl


def bce_kd(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, temperature: float = 1.0,
           hard_weight: float = 0.1, keep_labels: bool = False) -> torch.Tensor:
    """Multi-label tagging: ``w BCE(s, y) + (1 - w) BCE(s, sigmoid(t / T))`` (EfficientAT distilling PaSST); with
    ``keep_labels`` the soft target is ``max(sigmoid(t / T), y)``, so a labelled event the teacher missed stays one."""
    hard = F.binary_cross_entropy_with_logits(student, target)
    soft_target = torch.sigmoid(teacher / temperature)
    if keep_labels:
        soft_target = torch.maximum(soft_target, target)
    soft = F.binary_cross_entropy_with_logits(student, soft_target)
    return hard_weight * hard + (1 - hard_weight) * soft


def frame_kd(student_frames: torch.Tensor, teacher_frames: torch.Tensor, frame_target: torch.Tensor | None = None,
             temperature: float = 1.0, hard_weight: float = 0.5) -> torch.Tensor:
    """Frame-level KD for SED: BCE of the student's frame logits against the teacher's frame probabilities.

    The teacher's time axis (e.g. ATST-Frame 40 ms, BEATs 160 ms) is resampled to the student's.
    """
    soft = torch.sigmoid(match_time(teacher_frames, student_frames.shape[1]) / temperature)
    loss = F.binary_cross_entropy_with_logits(student_frames, soft)
    if frame_target is None:
        return loss
    hard = F.binary_cross_entropy_with_logits(student_frames, match_time(frame_target, student_frames.shape[1]))
    return hard_weight * hard + (1 - hard_weight) * loss
