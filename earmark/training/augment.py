"""Augmentations, batched on the training device: impulse responses and time roll on waveforms, mixup (inputs and
targets with one draw), then Freq-MixStyle and SpecAugment on the features (``Augmenter`` runs them in that order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from earmark.audio.features_torch import Frontend


@dataclass
class Mix:
    """A mixup draw: ``x = lam x + (1 - lam) x[perm]``; targets and losses are mixed with the same ``lam`` and ``perm``."""

    lam: float
    perm: torch.Tensor

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.lam * x + (1 - self.lam) * x[self.perm.to(x.device)]

    targets = inputs  # labels mix exactly as the inputs did

    def loss(self, loss_fn: Callable[..., torch.Tensor], *targets: torch.Tensor) -> torch.Tensor:
        """``lam L(targets) + (1 - lam) L(targets[perm])``: hard labels and teacher outputs move together."""
        return self.lam * loss_fn(*targets) + (1 - self.lam) * loss_fn(*(t[self.perm.to(t.device)] for t in targets))


def draw_mix(batch_size: int, alpha: float, generator: torch.Generator | None = None) -> Mix:
    """Mixup with lam ~ Beta(alpha, alpha) (alpha 0: no mixing).

    The permutation is drawn either way, so switching mixup off leaves the later augmentations' draws as they were.
    """
    perm = torch.randperm(batch_size, generator=generator)
    if alpha <= 0:
        return Mix(1.0, perm)
    return Mix(float(torch.distributions.Beta(alpha, alpha).sample()), perm)


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
    """Zero ``masks`` random bands of up to ``freq_mask`` mel bins and ``time_mask`` frames per item (SpecAugment, Park et al.)."""
    b, _, n_freq, n_time = features.shape
    out = features
    for size, axis, extent in ((freq_mask, 2, n_freq), (time_mask, 3, n_time)):
        for _ in range(masks if size > 0 else 0):
            width = torch.randint(0, size + 1, (b,))
            start = (torch.rand(b) * (extent - width).clamp(min=1)).long()
            idx = torch.arange(extent)
            band = (idx[None] >= start[:, None]) & (idx[None] < (start + width)[:, None])
            shape = [b, 1, extent, 1] if axis == 2 else [b, 1, 1, extent]
            out = out.masked_fill(band.view(shape).to(out.device), 0.0)
    return out


def time_roll(waves: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Roll each waveform by a random shift in [-max_shift, max_shift] samples."""
    if max_shift <= 0:
        return waves
    shifts = torch.randint(-max_shift, max_shift + 1, (waves.shape[0],)).tolist()
    return torch.stack([torch.roll(w, s) for w, s in zip(waves, shifts)])


class ImpulseResponses:
    """Device simulation (DIR): convolve waveforms with impulse responses (WAVs in a folder), truncated to length."""

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


@dataclass(frozen=True)
class Augmentation:
    """Which augmentations a run applies and how strongly (0 or "" switches one off)."""

    mixup_alpha: float = 0.3
    freq_mask: int = 0  # SpecAugment: widest masked band in mel bins
    time_mask: int = 0  # ... and in frames
    freq_mixstyle_p: float = 0.0
    freq_mixstyle_alpha: float = 0.4
    roll_seconds: float = 0.0
    dir_folder: str = ""
    dir_p: float = 0.4


@dataclass
class Augmented:
    """One augmented batch: the mixed waveforms (what an online teacher hears), the model's features, the mixup draw."""

    waves: torch.Tensor
    features: torch.Tensor
    mix: Mix


class Augmenter:
    """Waveforms (B, N) -> DIR -> roll -> mixup -> features (B, 1, mels, frames) -> Freq-MixStyle -> SpecAugment."""

    def __init__(self, augmentation: Augmentation, frontend: Frontend):
        self.settings, self.frontend = augmentation, frontend
        rate = frontend.spec.sample_rate
        self.dir = ImpulseResponses(augmentation.dir_folder, rate, augmentation.dir_p) if augmentation.dir_folder else None
        self.roll = int(augmentation.roll_seconds * rate)

    def __call__(self, waves: torch.Tensor) -> Augmented:
        s = self.settings
        if self.dir is not None:
            waves = self.dir(waves)
        waves = time_roll(waves, self.roll)
        mix = draw_mix(waves.shape[0], s.mixup_alpha)
        mixed = mix.inputs(waves)
        features = freq_mixstyle(self.frontend(mixed).unsqueeze(1), s.freq_mixstyle_alpha, s.freq_mixstyle_p)
        return Augmented(mixed, spec_augment(features, s.freq_mask, s.time_mask), mix)
