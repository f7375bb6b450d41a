"""Mel filterbanks shared by the numpy and torch frontends: Kaldi's (triangles in mel) and HTK's (triangles in Hz)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import sparse

from earmark.audio.spec import FrontendSpec


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


def htk_banks(n_mels: int, n_fft: int, sample_rate: float, f_min: float, f_max: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) as torchaudio.functional.melscale_fbanks(norm=None, mel_scale="htk")."""
    freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    points = htk_hz(np.linspace(htk_mel(f_min), htk_mel(f_max), n_mels + 2))
    widths = np.diff(points)
    slopes = points[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    return np.maximum(0.0, np.minimum(down, up)).T


@lru_cache(maxsize=16)
def _banks(spec: FrontendSpec) -> np.ndarray:
    build = kaldi_banks if spec.mel_scale == "kaldi" else htk_banks
    banks = build(spec.n_mels, spec.n_fft, spec.sample_rate, spec.f_min, spec.mel_high).astype(np.float32)
    banks.setflags(write=False)
    return banks


def mel_banks(spec: FrontendSpec) -> np.ndarray:
    """The spec's filterbank, (n_mels, n_fft // 2 + 1) float32, cached and read-only."""
    return _banks(spec)


@lru_cache(maxsize=16)
def _sparse(spec: FrontendSpec) -> sparse.csr_array:
    banks = sparse.csr_array(mel_banks(spec))
    for part in (banks.data, banks.indices, banks.indptr):
        part.setflags(write=False)
    return banks


def sparse_banks(spec: FrontendSpec) -> sparse.csr_array:
    """The spec's filterbank as a CSR matrix, cached: the numpy runtime's form. Each bin falls in at most two
    triangles, so a dense (n_mels, bins) product would spend ~99% of its multiplies on zeros."""
    return _sparse(spec)


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


@lru_cache(maxsize=16)
def _fft_window(spec: FrontendSpec) -> np.ndarray:
    left = (spec.n_fft - spec.win_length) // 2
    win = np.zeros(spec.n_fft, np.float32)
    win[left:left + spec.win_length] = window(spec)
    win.setflags(write=False)
    return win


def fft_window(spec: FrontendSpec) -> np.ndarray:
    """The window centred in ``n_fft`` samples (torch.stft's padding of a shorter window), cached and read-only."""
    return _fft_window(spec)
