"""Audio decoding (soundfile) and resampling (soxr) with one clear error per bad file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr


def load_audio(path: str | os.PathLike, sample_rate: int, mono: bool = True) -> np.ndarray:
    """float32 audio at ``sample_rate``: (samples,) when ``mono``, else (channels, samples)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such audio file; check the path (relative paths are read from the manifest's folder).")
    return decode_audio(str(path), sample_rate, mono)


def resample(data: np.ndarray, rate: int, target: int) -> np.ndarray:
    """float32 (samples,) or (samples, channels) from ``rate`` to ``target`` Hz: soxr's HQ band-limited filter, the one resampler
    of training data, teacher caches, online teachers and the mixer (channels are filtered independently)."""
    return soxr.resample(data, rate, target, quality="HQ").astype(np.float32)


def decode_audio(source: str | BinaryIO, sample_rate: int, mono: bool = True, name: str = "") -> np.ndarray:
    """``load_audio`` for a path or an open file of encoded audio (a WebDataset sample); ``name`` goes into errors."""
    name = name or str(source)
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except sf.LibsndfileError as err:
        raise ValueError(f"{name}: cannot be decoded ({err}); convert it to WAV or FLAC, e.g. `ffmpeg -i {Path(name).name} out.wav`.") from None
    if data.shape[0] == 0:
        raise ValueError(f"{name}: contains no samples; remove it from the manifest or replace the file.")
    if rate != sample_rate:
        data = resample(data, rate, sample_rate)
    if mono:
        return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
    return np.ascontiguousarray(data.T)
