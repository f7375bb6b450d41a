"""Incremental feature frames for live audio: each frame is computed once, however much windows overlap."""

from __future__ import annotations

import numpy as np

from earmark.audio.features import Scratch, frame_features, frame_view, frames_to_log_mel
from earmark.audio.spec import FrontendSpec


class FeatureStream:
    """Push samples at ``spec.sample_rate`` in any block size; get the newly completed ``frame_features`` frames.

    All pushes plus ``flush()`` equal ``frame_features`` of the whole signal. A clip-level
    ``subtract_mean`` is skipped: Kaldi's per-frame DC removal already cancels any constant offset.
    """

    def __init__(self, spec: FrontendSpec):
        if spec.subtract_mean and not (spec.kind == "kaldi_fbank" and spec.remove_dc_offset):
            raise ValueError(f"frontend {spec.name!r} subtracts the clip mean, which cannot be streamed; use a spec without subtract_mean.")
        self.spec = spec
        self._scratch = Scratch(spec)  # the frontend's buffers, reused every hop
        self._skip = spec.window_start if spec.center else 0  # padded-signal samples before a frame's window
        self._buffer = np.zeros(0)  # padded signal from the next frame's first sample, float64 (features.taper)
        self._raw: list[np.ndarray] = []  # the first samples, kept until the left reflection is known
        self._started = not spec.center
        self._last_sample: np.float32 | None = None
        self.samples_in = 0
        self.frames_out = 0

    def _condition(self, block: np.ndarray) -> np.ndarray:
        spec = self.spec
        block = np.asarray(block, np.float32).reshape(-1)
        if spec.waveform_scale != 1.0:
            block = block * np.float32(spec.waveform_scale)
        if spec.kind == "mel_stft" and spec.preemphasis and block.size:  # y[n] = x[n] - a x[n-1], written in place
            a, last = np.float32(spec.preemphasis), self._last_sample
            out = np.empty(block.size - (last is None), np.float32)  # the stream's first sample has no x[n-1]: dropped
            tail = out[last is not None:]
            np.subtract(block[1:], np.multiply(block[:-1], a, out=tail), out=tail)
            if last is not None:
                out[0] = block[0] - a * last
            self._last_sample = block[-1]
            return out
        return block

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add samples; returns (n_mels, k) new frames (k may be 0)."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        self.samples_in += samples.size
        signal = self._condition(samples)
        if not self._started:
            self._raw.append(signal)
            head = np.concatenate(self._raw)
            half = self.spec.n_fft // 2
            if head.size <= half:
                return self._empty()
            self._raw = []
            self._started = True
            pad = np.pad(head[: half + 1], (half, 0), mode=self.spec.pad_mode)[:half]
            signal = np.concatenate([pad, head])
        self._buffer = np.concatenate([self._buffer, signal])
        return self._emit()

    def samples_needed(self, frames: int) -> int:
        """How many more samples ``push`` needs before ``frames`` frames in all have come out (0: they have)."""
        spec = self.spec
        span = spec.frame_end(frames - 1)
        if spec.center:
            span = max(span, spec.n_fft // 2 + 1)  # the left reflection (push's start) needs this many
        conditioned = span + (1 if spec.kind == "mel_stft" and spec.preemphasis else 0)  # pre-emphasis eats one sample
        return max(0, conditioned - self.samples_in) if frames > 0 else 0

    def flush(self) -> np.ndarray:
        """The final frames that need the end of the signal (centre padding); the stream is spent afterwards."""
        spec = self.spec
        if not spec.center:
            return self._empty()
        total = spec.num_frames(self.samples_in)
        if not self._started:  # shorter than the padding: compute offline
            return frame_features(spec, np.concatenate(self._raw) if self._raw else np.zeros(0, np.float32))[:, self.frames_out:] if total else self._empty()
        half = spec.n_fft // 2
        tail = np.pad(self._buffer[-(half + 1):], (0, half), mode=spec.pad_mode)[half + 1:]
        self._buffer = np.concatenate([self._buffer, tail])
        frames = self._emit(limit=total - self.frames_out)
        return frames

    def _emit(self, limit: int | None = None) -> np.ndarray:
        spec = self.spec
        window, available = spec.win_length, self._buffer.size - self._skip  # a frame is due once its window's samples are in
        count = 0 if available < window else 1 + (available - window) // spec.hop_length
        if limit is not None:
            count = min(count, limit)
        if count == 0:
            return self._empty()
        windows = frame_view(self._buffer[self._skip:], window, spec.hop_length, count)
        out = frames_to_log_mel(spec, windows, self._scratch)
        self._buffer = self._buffer[count * spec.hop_length:]
        self.frames_out += count
        return out

    def _empty(self) -> np.ndarray:
        return np.zeros((self.spec.n_mels, 0), np.float32)
