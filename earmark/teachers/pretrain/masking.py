"""Mask generators of the pretraining recipes, as plain tensor functions (seeded through ``generator``)."""

from __future__ import annotations

import torch


def block_mask_1d(batch: int, length: int, ratio: float = 0.65, block: int = 5, generator: torch.Generator | None = None) -> torch.Tensor:
    """ATST-Frame: spans of ``block`` tokens until ``ratio`` of the sequence is masked, (B, L) bool."""
    target = int(round(ratio * length))
    mask = torch.zeros(batch, length, dtype=torch.bool)
    for b in range(batch):
        while int(mask[b].sum()) < target:
            start = int(torch.randint(0, length - block + 1, (1,), generator=generator))
            mask[b, start:start + block] = True
    return mask


def random_patch_mask(batch: int, patches: int, ratio: float, generator: torch.Generator | None = None,
                      weights: torch.Tensor | None = None) -> torch.Tensor:
    """Exactly ``round(ratio * patches)`` masked patches per item, uniform or drawn without replacement by ``weights`` (B, N)."""
    count = int(round(ratio * patches))
    probs = torch.ones(batch, patches) if weights is None else weights.clamp_min(1e-8)
    chosen = torch.multinomial(probs, count, replacement=False, generator=generator)
    return torch.zeros(batch, patches, dtype=torch.bool).scatter(1, chosen, True)


def hog_prior(patches: torch.Tensor) -> torch.Tensor:
    """ACM-SSKD eq. (1): ``exp(-(x - mu)^2 / sigma^2)`` of each patch's mean gradient magnitude x, per item.

    ``patches`` (B, N, ph, pw); mu and sigma are the mean and standard deviation of x over the item's patches.
    """
    gy = patches[..., 1:, :] - patches[..., :-1, :]
    gx = patches[..., :, 1:] - patches[..., :, :-1]
    x = (gy.abs().mean(dim=(-2, -1)) + gx.abs().mean(dim=(-2, -1))) / 2  # (B, N)
    mu, sigma = x.mean(dim=1, keepdim=True), x.std(dim=1, keepdim=True).clamp_min(1e-6)
    return torch.exp(-((x - mu) ** 2) / sigma**2)


def intra_patch_mask(batch: int, patches: int, ph: int, pw: int, max_fraction: float = 0.5, max_extent: float = 0.25,
                     probs: tuple[float, float, float] = (0.3, 0.3, 0.4), generator: torch.Generator | None = None) -> torch.Tensor:
    """ACM-SSKD intra-patch masking, (B, N, ph, pw) bool: up to ``max_fraction`` of the patches are chosen;
    inside each, a time band (p 0.3), a frequency band (p 0.3) or both (p 0.4), each at most 25% of the patch."""
    mask = torch.zeros(batch, patches, ph, pw, dtype=torch.bool)
    kinds = torch.tensor(probs)
    for b in range(batch):
        chosen = torch.randperm(patches, generator=generator)[: int(torch.randint(1, int(max_fraction * patches) + 1, (1,), generator=generator))]
        for n in chosen.tolist():
            kind = int(torch.multinomial(kinds, 1, generator=generator))  # 0 time, 1 frequency, 2 joint
            if kind in (0, 2):
                w = int(torch.randint(1, max(1, int(max_extent * pw)) + 1, (1,), generator=generator))
                s = int(torch.randint(0, pw - w + 1, (1,), generator=generator))
                mask[b, n, :, s:s + w] = True
            if kind in (1, 2):
                h = int(torch.randint(1, max(1, int(max_extent * ph)) + 1, (1,), generator=generator))
                s = int(torch.randint(0, ph - h + 1, (1,), generator=generator))
                mask[b, n, s:s + h, :] = True
    return mask


def gmml_mask(batch: int, height: int, width: int, low: float = 0.5, high: float = 0.7, max_block: float = 0.3,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """ASiT's GMML: random rectangles (up to 30% of each side, pixel-aligned, not patch-aligned) until a
    fraction U(low, high) of the (height, width) spectrogram is covered, (B, H, W) bool."""
    mask = torch.zeros(batch, height, width, dtype=torch.bool)
    for b in range(batch):
        target = float(torch.empty(1).uniform_(low, high, generator=generator)) * height * width
        while int(mask[b].sum()) < target:
            h = int(torch.randint(1, int(max_block * height) + 1, (1,), generator=generator))
            w = int(torch.randint(1, int(max_block * width) + 1, (1,), generator=generator))
            y = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            x = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            mask[b, y:y + h, x:x + w] = True
    return mask
