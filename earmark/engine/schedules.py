"""Learning-rate and momentum schedules as plain functions of the step."""

from __future__ import annotations

import math


SCHEDULES = ("cosine", "linear", "constant", "cosine_restarts")


def lr_factor(step: int, total: int, warmup: int = 0, kind: str = "cosine", min_factor: float = 0.0,
              restart_period: int = 0, restart_mult: int = 2) -> float:
    """Multiplier of the base learning rate at ``step``: linear warm-up, then cosine, linear, constant or cosine restarts."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    t, span = step - warmup, max(total - warmup, 1)
    if kind == "constant":
        return 1.0
    if kind == "linear":
        return max(min_factor, 1 - (1 - min_factor) * t / span)
    if kind == "cosine_restarts":  # SGDR (Loshchilov & Hutter): periods T_0, T_0 * mult, ...
        period = max(restart_period, 1)
        while t >= period:
            t -= period
            period *= restart_mult
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t / period))
    if kind == "cosine":
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(t, span) / span))
    raise ValueError(f"unknown schedule {kind!r}; choose cosine, linear, constant or cosine_restarts.")


def cosine_to(start: float, end: float, step: int, total: int) -> float:
    """Cosine ramp from ``start`` to ``end`` over ``total`` steps (EMA momentum, weight decay, temperatures)."""
    progress = min(step / max(total, 1), 1.0)
    return end - (end - start) * 0.5 * (1 + math.cos(math.pi * progress))
