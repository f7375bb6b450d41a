"""Batched augmentations for distillation: mixup with teacher targets, Freq-MixStyle, SpecAugment, time roll, DIR."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class Mix:
    """A mixup draw: ``x = lam x + (1 - lam) x[perm]``; losses are mixed with the same ``lam`` and ``perm``."""

    lam: float
    perm: torch.Tensor

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.lam * x + (1 - self.lam) * x[self.perm]

    def loss(self, loss_fn, *targets: torch.Tensor) -> torch.Tensor:
        """``lam L(targets) + (1 - lam) L(targets[perm])``: hard labels and teacher outputs move together."""
        return self.lam * loss_fn(*targets) + (1 - self.lam) * loss_fn(*(t[self.perm] for t in targets))


def draw_mix(batch_size: int, alpha: float, generator: torch.Generator | None = None) -> Mix:
    """Mixup with lam ~ Beta(alpha, alpha) (alpha 0: no mixing)."""
    if alpha <= 0:
        return Mix(1.0, torch.arange(batch_size))
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    return Mix(lam, torch.randperm(batch_size, generator=generator))


def freq_mixstyle(features: torch.Tensor, alpha: float = 0.4, p: float = 0.8, eps: float = 1e-6) -> torch.Tensor:
    """Freq-MixStyle (Schmid et al.): mix per-frequency mean/std (over channel and time) between batch items."""
    if p <= 0 or torch.rand(()) > p or features.shape[0] < 2:
        return features
    mean = features.mean(dim=(1, 3), keepdim=True)
    std = (features.var(dim=(1, 3), keepdim=True) + eps).sqrt()
    normed = (features - mean) / std
    lam = torch.distributions.Beta(alpha, alpha).sample((features.shape[0], 1, 1, 1)).to(features)
    perm = torch.randperm(features.shape[0])
    return normed * (lam * std + (1 - lam) * std[perm]) + lam * mean + (1 - lam) * mean[perm]


def spec_augment(features: torch.Tensor, freq_mask: int = 48, time_mask: int = 0, masks: int = 1) -> torch.Tensor:
    """Zero random frequency and time bands per item (SpecAugment, Park et al.)."""
    b, _, n_freq, n_time = features.shape
    out = features.clone()
    for size, axis, extent in ((freq_mask, 2, n_freq), (time_mask, 3, n_time)):
        for _ in range(masks if size else 0):
            width = torch.randint(0, size + 1, (b,))
            start = (torch.rand(b) * (extent - width).clamp(min=1)).long()
            idx = torch.arange(extent)
            mask = (idx[None] >= start[:, None]) & (idx[None] < (start + width)[:, None])
            shape = [b, 1, extent, 1] if axis == 2 else [b, 1, 1, extent]
            out = out.masked_fill(mask.view(shape).to(out.device), 0.0)
    return out


def time_roll(waves: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Roll each waveform by a random shift in [-max_shift, max_shift] samples."""
    if max_shift <= 0:
        return waves
    shifts = torch.randint(-max_shift, max_shift + 1, (waves.shape[0],)).tolist()
    return torch.stack([torch.roll(w, s) for w, s in zip(waves, shifts)])


class ImpulseResponses:
    """Device simulation: convolve waveforms with impulse responses (WAVs in a folder), truncated to length."""

    def __init__(self, folder: str | os.PathLike, sample_rate: int, p: float = 0.4):
        from earmark.audio.io import load_audio

        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".wav", ".flac"))
        if not files:
            raise ValueError(f"{folder}: holds no .wav/.flac impulse responses; point --dir-folder at a folder of them.")
        self.irs = [torch.from_numpy(load_audio(f, sample_rate)) for f in files]
        self.p = p

    def __call__(self, waves: torch.Tensor) -> torch.Tensor:
        out = waves.clone()
        for i in range(waves.shape[0]):
            if torch.rand(()) < self.p:
                ir = self.irs[int(torch.randint(len(self.irs), ()))].to(waves)
                ir = ir / (ir.abs().max() + 1e-9)
                n = waves.shape[1] + ir.numel() - 1
                conv = torch.fft.irfft(torch.fft.rfft(waves[i], n) * torch.fft.rfft(ir, n), n)[: waves.shape[1]]
                out[i] = conv * (waves[i].abs().max() / (conv.abs().max() + 1e-9))
        return out
