"""Audio decoding (soundfile) and resampling (soxr) with one clear error per bad file."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr


SKIP_HINT = ("`earmark data check MANIFEST` lists every such file; distill, finetune, pretrain, predict and data mix leave "
             "them out with --skip-bad")


class AudioError(ValueError):
    """A file that cannot be used as audio, in one sentence naming it (also when raised in a DataLoader worker)."""

    def __init__(self, message: str):
        if message.startswith("Caught "):  # re-raised by the DataLoader: the worker's traceback, then "AudioError: <sentence>"
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message)


def audio_seconds(path: str | os.PathLike) -> float:
    """The duration of an audio file from its header (nothing is decoded)."""
    path = _existing(path)
    try:
        info = sf.info(str(path))
    except sf.LibsndfileError as err:
        raise _undecodable(str(path), err) from None
    return info.frames / info.samplerate


def check_audio(path: str | os.PathLike, block_seconds: float = 60.0) -> float:
    """Decode a whole file block by block (bounded memory) and return its duration; bad files (also truncated or
    all-zero ones, which training would refuse) raise one clear error."""
    path = _existing(path)
    with open(path, "rb") as raw:
        return check_encoded(raw, str(path), block_seconds)


def check_encoded(raw: BinaryIO, name: str, block_seconds: float = 60.0) -> float:
    """``check_audio`` for an open file of encoded audio (a WebDataset sample); ``name`` goes into errors."""
    _refuse_truncated(name, raw)
    heard = False
    try:
        with sf.SoundFile(raw) as f:
            for block in f.blocks(int(block_seconds * f.samplerate), dtype="float32", always_2d=True):
                _refuse_nonfinite(name, block)
                heard = heard or bool(block.any())
            frames, rate = f.frames, f.samplerate
    except (sf.LibsndfileError, RuntimeError) as err:
        raise _undecodable(name, err) from None
    if frames == 0:
        raise AudioError(f"{name}: contains no samples; remove it from the manifest or replace the file ({SKIP_HINT}).")
    if not heard:
        raise _silent(name)
    return frames / rate


def refuse_silence(name: str, wave: np.ndarray) -> np.ndarray:
    """``wave``, unless every sample is zero: a training clip of digital silence is a broken file (a failed recording
    or export), never a sound."""
    if not wave.any():
        raise _silent(name)
    return wave


def load_audio(path: str | os.PathLike, sample_rate: int, mono: bool = True, offset: float = 0.0,
               seconds: float | None = None) -> np.ndarray:
    """float32 audio at ``sample_rate``: (samples,) when ``mono``, else (channels, samples).

    ``offset`` and ``seconds`` read a window (only that part of the file is decoded).
    """
    return decode_audio(str(_existing(path)), sample_rate, mono, offset=offset, seconds=seconds)


def resample(data: np.ndarray, rate: int, target: int) -> np.ndarray:
    """float32 (samples,) or (samples, channels) from ``rate`` to ``target`` Hz: soxr's HQ band-limited filter, the one resampler
    of training data, teacher caches, online teachers and the mixer (channels are filtered independently)."""
    return soxr.resample(data, rate, target, quality="HQ").astype(np.float32)


def decode_audio(source: str | BinaryIO, sample_rate: int, mono: bool = True, name: str = "", offset: float = 0.0,
                 seconds: float | None = None) -> np.ndarray:
    """``load_audio`` for a path or an open file of encoded audio (a WebDataset sample); ``name`` goes into errors.

    NaN or infinite samples are refused: one such sample turns every weight it reaches into NaN.
    """
    name = name or str(source)
    if not isinstance(source, str):
        _refuse_truncated(name, source)
    elif Path(source).suffix.lower() == ".wav":
        with open(source, "rb") as raw:
            _refuse_truncated(name, raw)
    try:
        with sf.SoundFile(source) as f:
            rate = f.samplerate
            if offset:
                f.seek(min(int(round(offset * rate)), f.frames))
            data = f.read(-1 if seconds is None else math.ceil(seconds * rate), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise _undecodable(name, err) from None
    if data.shape[0] == 0:
        raise AudioError(f"{name}: contains no samples{' in the window read' if offset else ''}; remove it from the manifest or replace the file.")
    _refuse_nonfinite(name, data)
    if rate != sample_rate:
        data = resample(data, rate, sample_rate)
    if mono:
        return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
    return np.ascontiguousarray(data.T)


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such audio file; check the path (relative paths are read from the manifest's folder).")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: is empty (0 bytes); replace the file or remove it from the manifest ({SKIP_HINT}).")
    return path


TRUNCATION_TOLERANCE_SECONDS = 0.01  # a data chunk this little short of its header is a writer's miscount, read as it is


def _refuse_truncated(name: str, raw: BinaryIO) -> None:
    """A WAV whose data chunk is shorter than its header says (an interrupted copy): libsndfile would read the part
    that is there without a word. Sizes of 0 or 0xFFFFFFFF are a streaming writer's placeholders and pass, and so does
    a shortfall of at most TRUNCATION_TOLERANCE_SECONDS of audio (14 openttd-opensfx files of the real set hold 57-159
    bytes, under 2 ms of audio, less than their headers say)."""
    start = raw.tell()
    try:
        if raw.read(4) != b"RIFF" or not raw.read(4) or raw.read(4) != b"WAVE":
            return
        byte_rate = 0
        while len(header := raw.read(8)) == 8:
            chunk, size = header[:4], int.from_bytes(header[4:], "little")
            if chunk == b"fmt ":
                byte_rate = int.from_bytes(raw.read(size)[8:12], "little")  # WAVEFORMAT's nAvgBytesPerSec
                raw.seek(size & 1, os.SEEK_CUR)
                continue
            if chunk == b"data":
                present = _remaining(raw)
                tolerated = byte_rate * TRUNCATION_TOLERANCE_SECONDS
                if 0 < size < 0xFFFFFFFF and present < size - tolerated:
                    raise AudioError(f"{name}: is truncated: its header promises {size} bytes of audio but the file holds "
                                     f"{present}; copy or export it again ({SKIP_HINT}).")
                return
            raw.seek(size + (size & 1), os.SEEK_CUR)
    finally:
        raw.seek(start)


def _remaining(raw: BinaryIO) -> int:
    here = raw.tell()
    end = raw.seek(0, os.SEEK_END)
    raw.seek(here)
    return end - here


def _refuse_nonfinite(name: str, data: np.ndarray) -> None:
    if not np.isfinite(data).all():
        raise AudioError(f"{name}: contains NaN or infinite samples; repair or remove the file ({SKIP_HINT}).")


def _silent(name: str) -> AudioError:
    return AudioError(f"{name}: every sample is zero (digital silence); replace the file or remove it from the manifest "
                      f"({SKIP_HINT}).")


def _undecodable(name: str, err: Exception) -> AudioError:
    return AudioError(f"{name}: cannot be decoded ({err}); convert it to WAV or FLAC, e.g. `ffmpeg -i {Path(name).name} out.wav` "
                      f"({SKIP_HINT}).")
