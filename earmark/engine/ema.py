"""Exponential moving average of a model's parameters (BYOL / DINO / ATST / ASiT teachers)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from earmark.engine.schedules import cosine_to


class EMA:
    """A frozen copy updated as ``p_t = m p_t + (1 - m) p_s``, with ``m`` cosine from ``start`` to ``end``.

    Every rank computes the same update from the same (all-reduced) student, so the copies stay identical.
    """

    def __init__(self, model: nn.Module, start: float = 0.996, end: float = 1.0, total_steps: int = 1):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.start, self.end, self.total_steps = start, end, total_steps

    def momentum(self, step: int) -> float:
        return cosine_to(self.start, self.end, step, self.total_steps)

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> None:
        m = self.momentum(step)
        for ema_p, p in zip(self.model.parameters(), student.parameters()):
            ema_p.mul_(m).add_(p.detach(), alpha=1 - m)
        for ema_b, b in zip(self.model.buffers(), student.buffers()):
            ema_b.copy_(b)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
