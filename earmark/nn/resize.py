"""Resizing along time: frame grids of different models (a teacher's 40 ms against a student's 62.5 ms) made to meet."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def match_time(frames: torch.Tensor, length: int) -> torch.Tensor:
    """Resample (B, T, C) along time to ``length`` steps by linear interpolation (frame grids of different models)."""
    if frames.shape[1] == length:
        return frames
    return F.interpolate(frames.transpose(1, 2), size=length, mode="linear", align_corners=False).transpose(1, 2)
