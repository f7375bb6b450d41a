"""Mel filterbanks shared by the numpy and torch frontends: Kaldi's (triangles in mel), HTK's (triangles in Hz) and
Slaney's (triangles in Hz on the Slaney mel scale, each scaled to unit area: librosa.filters.mel's default, PANNs')."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from earmark.audio.spec import FrontendSpec

SLANEY_HZ_PER_MEL = 200.0 / 3
SLANEY_BREAK_HZ = 1000.0  # where Slaney's scale turns logarithmic
SLANEY_BREAK_MEL = SLANEY_BREAK_HZ / SLANEY_HZ_PER_MEL  # 15
SLANEY_LOG_STEP = np.log(6.4) / 27  # 27 mels per factor 6.4 above the break


def kaldi_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def htk_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def htk_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def kaldi_banks(n_mels: int, n_fft: int, sample_rate: float, f_min: float, f_max: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) as Kaldi / torchaudio.compliance.kaldi.get_mel_banks, plus the zero Nyquist column."""
    mel_lo, mel_hi = kaldi_mel(f_min), kaldi_mel(f_max)
    delta = (mel_hi - mel_lo) / (n_mels + 1)
    left = mel_lo + delta * np.arange(n_mels)[:, None]
    centre, right = left + delta, left + 2 * delta
    mel = kaldi_mel(sample_rate / n_fft * np.arange(n_fft // 2))[None, :]
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    banks = np.maximum(0.0, np.minimum(up, down))
    return np.pad(banks, ((0, 0), (0, 1)))


def slaney_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's Auditory Toolbox scale (librosa's default): linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    return np.where(hz < SLANEY_BREAK_HZ, hz / SLANEY_HZ_PER_MEL,
                    SLANEY_BREAK_MEL + np.log(np.maximum(hz, SLANEY_BREAK_HZ) / SLANEY_BREAK_HZ) / SLANEY_LOG_STEP)


def slaney_hz(mel: np.ndarray) -> np.ndarray:
    return np.where(mel < SLANEY_BREAK_MEL, mel * SLANEY_HZ_PER_MEL,
                    SLANEY_BREAK_HZ * np.exp(SLANEY_LOG_STEP * (np.maximum(mel, SLANEY_BREAK_MEL) - SLANEY_BREAK_MEL)))


def _hz_triangles(edges: np.ndarray, n_fft: int, top: float) -> np.ndarray:
    """(len(edges) - 2, n_fft // 2 + 1) triangles with corners at ``edges`` (Hz) over ``n_fft // 2 + 1`` bins from 0 to ``top``."""
    freqs = np.linspace(0, top, n_fft // 2 + 1)
    widths = np.diff(edges)
    slopes = edges[:, None] - freqs[None, :]
    down = -slopes[:-2] / widths[:-1, None]
    up = slopes[2:] / widths[1:, None]
    return np.maximum(0.0, np.minimum(down, up))


def htk_banks(n_mels: int, n_fft: int, sample_rate: float, f_min: float, f_max: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) as torchaudio.functional.melscale_fbanks(norm=None, mel_scale="htk")."""
    return _hz_triangles(htk_hz(np.linspace(htk_mel(f_min), htk_mel(f_max), n_mels + 2)), n_fft, sample_rate // 2)


def slaney_banks(n_mels: int, n_fft: int, sample_rate: float, f_min: float, f_max: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) as librosa.filters.mel's defaults (htk=False, norm="slaney"): each triangle has unit area."""
    edges = slaney_hz(np.linspace(slaney_mel(f_min), slaney_mel(f_max), n_mels + 2))
    return _hz_triangles(edges, n_fft, sample_rate / 2) * (2.0 / (edges[2:] - edges[:-2]))[:, None]


_BUILDERS = {"kaldi": kaldi_banks, "htk": htk_banks, "slaney": slaney_banks}


@lru_cache(maxsize=16)
def _banks(spec: FrontendSpec) -> np.ndarray:
    banks = _BUILDERS[spec.mel_scale](spec.n_mels, spec.n_fft, spec.sample_rate, spec.f_min, spec.mel_high).astype(np.float32)
    banks.setflags(write=False)
    return banks


def mel_banks(spec: FrontendSpec) -> np.ndarray:
    """The spec's filterbank, (n_mels, n_fft // 2 + 1) float32, cached and read-only."""
    return _banks(spec)


BAND_FILTERS = 16  # filters per dense block of the banded product (measured in docs/frontends.md)


@lru_cache(maxsize=16)
def _bands(spec: FrontendSpec) -> tuple[tuple[int, int, np.ndarray], ...]:
    banks, bands = mel_banks(spec), []
    for first in range(0, spec.n_mels, BAND_FILTERS):
        rows = banks[first:first + BAND_FILTERS]
        used = np.flatnonzero(rows.any(axis=0))
        if used.size:  # a block of filters narrower than a bin may cover none
            block = np.ascontiguousarray(rows[:, used[0]:used[-1] + 1])
            block.setflags(write=False)
            bands.append((first, int(used[0]), block))
    return tuple(bands)


def banded_banks(spec: FrontendSpec) -> tuple[tuple[int, int, np.ndarray], ...]:
    """The spec's filterbank as dense blocks ``(first filter, first bin, weights (filters, bins))`` of
    ``BAND_FILTERS`` neighbouring filters over the bins they span, cached: the numpy runtime's form. Each bin falls in at
    most two neighbouring triangles, so a full (n_mels, bins) product would spend ~99% of its multiplies on zeros,
    while a block's own zeros cost less than another call per filter."""
    return _bands(spec)


@lru_cache(maxsize=16)
def _window(spec: FrontendSpec) -> np.ndarray:
    n = spec.win_length
    denominator = n if spec.periodic_window else n - 1
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / denominator)
    win = (hann ** 0.85 if spec.window == "povey" else hann).astype(np.float32)
    win.setflags(write=False)
    return win


def window(spec: FrontendSpec) -> np.ndarray:
    """The analysis window of ``win_length`` samples (Povey = Hann^0.85, Kaldi's default), cached and read-only."""
    return _window(spec)
