"""numpy log-mel frontends (the runtime's): ``compute_features = finish_window(frame_features(...))``.

``frame_features`` is everything that depends on one frame only (streamable); ``finish_window``
holds the per-window steps: ATST's top_db floor against the window's maximum, the dB clamp, then normalisation.
"""

from __future__ import annotations

import numpy as np
from earmark.audio.melbanks import banded_banks, window
from earmark.audio.spec import FrontendSpec

KALDI_EPS = float(np.finfo(np.float32).eps)
FFT_BATCH_BYTES = 2**21  # float64 frames per FFT batch: 64 of 4096 points, 512 of 512


def condition(spec: FrontendSpec, wave: np.ndarray) -> np.ndarray:
    """Sample-level steps before framing: scaling and, for mel_stft, pre-emphasis ``y[n] = x[n+1] - a x[n]``."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (samples,), got {wave.shape}; downmix it first (load_audio does).")
    if spec.waveform_scale != 1.0:
        wave = wave * np.float32(spec.waveform_scale)
    if spec.kind == "mel_stft" and spec.preemphasis:
        wave = wave[1:] - np.float32(spec.preemphasis) * wave[:-1]
    return wave


def pad_centre(spec: FrontendSpec, wave: np.ndarray) -> np.ndarray:
    """Reflect- or zero-pad ``n_fft // 2`` samples on both sides (torch.stft's ``center=True``)."""
    half = spec.n_fft // 2
    if spec.pad_mode == "reflect" and wave.size <= half:
        raise ValueError(f"{wave.size} samples are too few for reflect padding of {half}; pass at least {half + 1 + (spec.preemphasis > 0)} samples.")
    return np.pad(wave, half, mode=spec.pad_mode)


def frame_view(signal: np.ndarray, frame_length: int, hop: int, count: int) -> np.ndarray:
    """(count, frame_length) read-only view of a 1-D signal, frame i from sample i * hop: sliding_window_view's frames
    without its ~50 µs of argument checks, which a live stream would pay on every hop."""
    signal = np.ascontiguousarray(signal)
    if count and (count - 1) * hop + frame_length > signal.size:
        raise ValueError(f"{count} frames of {frame_length} samples every {hop} need {(count - 1) * hop + frame_length} samples, not {signal.size}.")
    frames = np.ndarray((count, frame_length), signal.dtype, signal, 0, (hop * signal.itemsize, signal.itemsize))
    frames.flags.writeable = False
    return frames


class Scratch:
    """What ``frames_to_log_mel`` keeps between calls: the window in float64, the mel blocks, and the windowed-frames
    buffer, whose zero tail is written once. A live stream holds one and reuses it every hop: looking the window and
    the blocks up by spec hashes all of the spec's fields (~4 µs a lookup). One per thread: nothing here is locked."""

    def __init__(self, spec: FrontendSpec):
        self.window = window(spec).astype(np.float64)
        self.bands = banded_banks(spec)
        self.batch = max(1, FFT_BATCH_BYTES // (8 * spec.n_fft))
        self._windowed = np.zeros((0, spec.n_fft))

    def windowed(self, rows: int) -> np.ndarray:
        """(rows, n_fft) float64 whose columns from win_length on are zeros that no step overwrites."""
        if len(self._windowed) < rows:
            self._windowed = np.zeros((rows, self._windowed.shape[1]))
        return self._windowed[:rows]


def taper(spec: FrontendSpec, frames: np.ndarray, scratch: Scratch) -> np.ndarray:
    """(T, samples) frames -> (T, n_fft) float64 windowed frames, after Kaldi's per-frame DC removal and pre-emphasis.

    The window's samples come first and zeros follow (Kaldi pads its win_length to n_fft so; a centred mel_stft window
    moves there from the middle of its n_fft-sample frame): a circular shift changes only the phases, never |X|^2.
    float64 because numpy's FFT runs it 4x faster than float32 (docs/frontends.md), and Kaldi's log floor needs it;
    float64 frames (a float64 signal, cast once, each sample then shared by overlapping frames) take an unbuffered
    multiply. The zeros are part of ``scratch``'s buffer, written once: numpy's rfft of n_fft samples is 1.4x faster
    than its rfft of fewer samples padded to n_fft.
    """
    if spec.kind == "kaldi_fbank":
        if spec.remove_dc_offset:
            frames = frames - frames.mean(axis=1, keepdims=True)
        if spec.preemphasis:
            previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
            frames = frames - np.float32(spec.preemphasis) * previous
    weights = scratch.window
    start = (frames.shape[1] - weights.size) // 2  # torch.stft's place for a window shorter than its frame
    windowed = scratch.windowed(len(frames))
    np.multiply(frames[:, start:start + weights.size], weights, out=windowed[:, :weights.size])
    return windowed


def power_spectrum(spec: FrontendSpec, windowed: np.ndarray) -> np.ndarray:
    """(T, n_fft) windowed frames -> (T, bins) float32 |X|^power: re^2 + im^2 squared in place in the spectrum."""
    spectrum = np.fft.rfft(windowed, axis=1)
    parts = spectrum.view(np.float64)  # (T, 2 bins): re, im, re, im, ...
    np.square(parts, out=parts)
    power = np.empty((len(windowed), spectrum.shape[1]), np.float32)  # the float64 add, rounded as it is written
    np.add(parts[:, 0::2], parts[:, 1::2], out=power, casting="same_kind")
    if spec.power != 2.0:
        np.power(power, np.float32(spec.power / 2), out=power)
    return power


def mel_energies(spec: FrontendSpec, power: np.ndarray, scratch: Scratch) -> np.ndarray:
    """(T, bins) power -> (n_mels, T) mel energies: one small matrix product per band of filters (``banded_banks``)."""
    energies = np.zeros((spec.n_mels, len(power)), np.float32)
    for first, start, weights in scratch.bands:
        np.matmul(weights, power[:, start:start + weights.shape[1]].T, out=energies[first:first + len(weights)])
    return energies


def compress(spec: FrontendSpec, energies: np.ndarray) -> np.ndarray:
    """Mel energies -> the spec's log, in place (Kaldi's log with an eps floor, log(x + offset), or decibels)."""
    if spec.log == "log_eps":
        np.maximum(energies, np.float32(KALDI_EPS), out=energies)
    elif spec.log == "log":
        np.add(energies, np.float32(spec.log_offset), out=energies)
    else:
        np.maximum(energies, np.float32(1e-10), out=energies)
        return np.multiply(np.log10(energies, out=energies), np.float32(10.0), out=energies)
    return np.log(energies, out=energies)


def frames_to_log_mel(spec: FrontendSpec, frames: np.ndarray, scratch: Scratch | None = None) -> np.ndarray:
    """(T, samples) frames, T >= 1 -> (n_mels, T) float32 log-mel energies (before window-level steps).

    Frames go through in batches whose float64 buffers stay in the caches: a 10-s cpjku clip in one batch took twice
    the time of batches of 64 frames (docs/frontends.md). A stream passes the ``scratch`` it keeps between hops.
    """
    scratch = scratch or Scratch(spec)
    parts = []
    for start in range(0, len(frames), scratch.batch):
        windowed = taper(spec, frames[start:start + scratch.batch], scratch)
        parts.append(compress(spec, mel_energies(spec, power_spectrum(spec, windowed), scratch)))
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def frame_features(spec: FrontendSpec, wave: np.ndarray) -> np.ndarray:
    """(n_mels, frames) float32 log-mel of a whole mono waveform at ``spec.sample_rate``."""
    signal = condition(spec, wave)
    if spec.subtract_mean and signal.size:
        signal = signal - signal.mean()
    n_frames = spec.num_frames(np.asarray(wave).shape[-1])
    if n_frames == 0:
        return np.zeros((spec.n_mels, 0), np.float32)
    if spec.center:
        signal = pad_centre(spec, signal)
    frame_len = spec.n_fft if spec.center else spec.win_length
    frames = frame_view(signal.astype(np.float64), frame_len, spec.hop_length, n_frames)  # see taper
    return frames_to_log_mel(spec, frames)


def finish_window(spec: FrontendSpec, log_mel: np.ndarray) -> np.ndarray:
    """Per-window steps on (n_mels, frames): the top_db floor (as AmplitudeToDB per item), then normalisation."""
    if spec.top_db is not None and log_mel.size:
        log_mel = np.maximum(log_mel, log_mel.max() - np.float32(spec.top_db))
    if spec.db_min is not None or spec.db_max is not None:
        log_mel = np.clip(log_mel, spec.db_min, spec.db_max)
    normalised = log_mel - np.float32(spec.norm_mean)  # a new array: divided in place, float32 not copied again
    normalised /= np.float32(spec.norm_scale)
    return normalised.astype(np.float32, copy=False)


def compute_features(spec: FrontendSpec, wave: np.ndarray) -> np.ndarray:
    """Normalised (n_mels, frames) features of one mono waveform, as the model sees them."""
    return finish_window(spec, frame_features(spec, wave))
