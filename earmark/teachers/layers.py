"""Grid and time resizing shared by the teacher families (the transformer block itself is ``earmark.nn.Block``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from earmark.nn import match_time


def resize_grid(pos: torch.Tensor, grid: tuple[int, int], new: tuple[int, int], centre: bool = False) -> torch.Tensor:
    """Positions (1, g0 * g1, D) of a 2-D grid resized to ``new``, axis by axis: cut where shorter, bilinear where longer.

    The cut keeps the first rows/columns, or with ``centre`` those from ``g // 2 - n // 2`` on, as SSAST and AST do.
    """
    if grid == new:
        return pos
    d = pos.shape[-1]
    p = pos.reshape(1, *grid, d).permute(0, 3, 1, 2)
    for axis, (g, n) in enumerate(zip(grid, new)):
        if n < g:
            start = g // 2 - n // 2 if centre else 0
            p = p.narrow(2 + axis, start, n)
        elif n > g:
            size = (n, p.shape[3]) if axis == 0 else (p.shape[2], n)
            p = F.interpolate(p, size=size, mode="bilinear", align_corners=False)
    return p.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], d)


def pool_or_stretch(sequence: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, N, D) to ``steps`` steps as PretrainedSED's prediction wrapper does: adaptive average pooling when longer,
    linear interpolation when shorter (so 496 BEATs tokens, flattened time-major, pool across frequency patches too)."""
    if sequence.shape[1] > steps:
        return F.adaptive_avg_pool1d(sequence.transpose(1, 2), steps).transpose(1, 2)
    return match_time(sequence, steps)
