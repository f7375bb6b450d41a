"""StreamingClassifier: audio blocks in, model scores every hop out; each feature frame is computed once."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

import numpy as np
import soxr
from threadpoolctl import ThreadpoolController

from earmark.audio.events import Scores
from earmark.audio.features import finish_window, frame_features
from earmark.audio.io import load_audio
from earmark.audio.streaming import FeatureStream
from earmark.runtime.model import Backend, load_backend

SILENCE_RESET_SECONDS = 0.5  # this much digital silence (exact zeros: an underrun, a muted input) resets a stateful model


@dataclass
class WindowResult:
    """One model run: the window's clip scores, the new segments it adds to the timeline and its new log-mel frames."""

    end: float
    clip: np.ndarray
    segments: list[Scores]
    latency_ms: float
    features: np.ndarray | None = None  # (n_mels, frames) log-mel columns this window added (the whole window first)
    scene: np.ndarray | None = None  # a scene head's probabilities over the metadata's scene_labels
    heard: float = 0.0  # stream time of the last sample the window depends on: the earliest its scores can be known


class WindowPlan:
    """Which frames form each window and which segments a window contributes (shared by streaming and offline)."""

    def __init__(self, backend: Backend, window_seconds: float | None = None, hop_seconds: float | None = None):
        meta = backend.metadata
        self.meta, self.spec = meta, meta.frontend
        if window_seconds is not None and abs(window_seconds - meta.window_seconds) > 1e-6:
            raise ValueError(f"the model was exported for {meta.window_seconds} s windows, not {window_seconds}; "
                             "re-export it for another window.")
        if meta.stateful and hop_seconds is not None and abs(hop_seconds - meta.hop_seconds) > 1e-6:
            raise ValueError(f"a stateful model runs hop by hop on the {meta.hop_seconds} s hop it was exported with, "
                             f"not {hop_seconds}; drop --hop.")
        if hop_seconds is not None and hop_seconds > meta.window_seconds:
            raise ValueError(f"--hop {hop_seconds:g} s is longer than the model's {meta.window_seconds:g} s window, so the audio "
                             f"between windows would go unheard; pass a --hop of at most {meta.window_seconds:g}.")
        self.frames = meta.input_frames
        self.hop_seconds = hop_seconds or meta.hop_seconds
        self.hop_frames = max(1, round(self.hop_seconds / self.spec.hop_seconds))
        self.hop_seconds = self.hop_frames * self.spec.hop_seconds

    @property
    def offset_lag(self) -> float:
        """How long after an event ends a clip model's windows still contain it (frame models: none)."""
        return 0.0 if "frame" in self.meta.outputs else self.meta.window_seconds - self.hop_seconds

    def window_ends(self, available: int, done: int) -> range:
        """End frame indices of the windows that ``available`` frames complete, after ``done`` windows."""
        first = self.frames + done * self.hop_frames
        return range(first, available + 1, self.hop_frames)

    def result(self, backend: Backend, frames: np.ndarray, end_frame: int, first: bool) -> WindowResult:
        """Run the model on the ``frames`` window ending at ``end_frame``; the first window adds all its span."""
        features = finish_window(self.spec, frames)[None, None]
        started = time.perf_counter()
        out = backend.run(features)  # float32: finish_window's output
        latency = 1000 * (time.perf_counter() - started)
        end = end_frame * self.spec.hop_seconds
        if "frame" in out:
            frame_probs = out["frame"][0]
            step = self.meta.frame_hop_seconds or self.meta.window_seconds / len(frame_probs)
            new = len(frame_probs) if first else max(1, round(self.hop_seconds / step))
            segments = [Scores(end - (new - i) * step, end - (new - i - 1) * step, frame_probs[len(frame_probs) - new + i])
                        for i in range(min(new, len(frame_probs)))]
        else:
            segments = [Scores(end - (self.meta.window_seconds if first else self.hop_seconds), end, out["clip"][0])]
        return WindowResult(end, out["clip"][0], segments, latency, frames if first else frames[:, -self.hop_frames:],
                            out["scene"][0] if "scene" in out else None, self.heard(end_frame))

    def hops(self, backend: Backend, frames: np.ndarray, end_frames: list[int]) -> list[WindowResult]:
        """A chunked stateful model's consecutive hops ending at ``end_frames`` (``frames`` holds them in order) in one
        run: the scores of one run a hop, since the state carries through the chunk as it does between calls."""
        n = self.hop_frames
        hops = [frames[:, k * n:(k + 1) * n] for k in range(len(end_frames))]
        features = np.concatenate([finish_window(self.spec, hop) for hop in hops], axis=1)[None, None]
        started = time.perf_counter()
        frame_probs = backend.run(features)["frame"][0]  # one output frame a hop
        if len(frame_probs) != len(end_frames):
            raise RuntimeError(f"the stateful model scored {len(frame_probs)} of the {len(end_frames)} hops it was given in "
                               "one call: its graph does not stream several hops a call; re-export it with `earmark export`, whose parity checks that.")
        latency = 1000 * (time.perf_counter() - started) / len(end_frames)
        results = []
        for hop, probs, end_frame in zip(hops, frame_probs, end_frames):
            end = end_frame * self.spec.hop_seconds
            results.append(WindowResult(end, probs, [Scores(end - self.hop_seconds, end, probs)], latency, hop, None, self.heard(end_frame)))
        return results

    def heard(self, end_frame: int) -> float:
        """Stream seconds of audio the window ending at ``end_frame`` needs: up to the last sample its last frame's
        window reads (``FrontendSpec.frame_end``)."""
        return self.spec.frame_end(end_frame - 1) / self.spec.sample_rate


class StreamingClassifier:
    """Push samples of any rate and block size; get a ``WindowResult`` for every hop the audio completes.

    ``threads`` bounds ONNX Runtime and, while the classifier works, numpy's BLAS: a BLAS pool spread over
    every core costs more in wake-ups than the frontend's small products gain, and competes with the model.
    ``pin_blas=False`` leaves the BLAS pool as the process set it (benchmarks compare both).
    """

    def __init__(self, model_path: str | os.PathLike, backend: str = "onnxruntime", hop_seconds: float | None = None,
                 window_seconds: float | None = None, threads: int = 1, pin_blas: bool = True):
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}; use --threads 1 on a small device.")
        self.threads = threads
        # the BLAS libraries, found once: threadpoolctl's limit() finds them again on every call (~10 µs a hop)
        self._blas = ThreadpoolController().select(user_api="blas").lib_controllers if pin_blas else []
        self.backend = load_backend(model_path, backend, threads)
        self.metadata = self.backend.metadata
        self.plan = WindowPlan(self.backend, window_seconds, hop_seconds)
        self.spec = self.metadata.frontend
        self._stream = FeatureStream(self.spec)
        self._pending: list[np.ndarray] = []  # samples held until they complete a window: frames are computed in batches
        self._pending_size = 0
        self._frames = np.zeros((self.spec.n_mels, 0), np.float32)
        self._first_frame = 0  # absolute index of self._frames[:, 0]
        self._windows = 0
        self._resampler: soxr.ResampleStream | None = None
        self._input_rate: int | None = None
        self._unresampled: list[np.ndarray] = []  # input at another rate, held until it may complete a window
        self._unresampled_size = 0
        self._input_samples = 0  # all input at that rate
        self.state_resets = 0
        self._zeros = ZeroRun()

    def reset_state(self) -> None:
        """A stateful model starts again from zero state (after a gap in the source or digital silence); counted in
        ``state_resets``."""
        if self.metadata.stateful:
            self.backend.reset_state()
            self.state_resets += 1

    @property
    def seconds_processed(self) -> float:
        held = self._unresampled_size / self._input_rate if self._unresampled_size else 0.0
        return (self._stream.samples_in + self._pending_size) / self.spec.sample_rate + held

    def push(self, samples: np.ndarray, sample_rate: int) -> list[WindowResult]:
        """Add mono float samples at ``sample_rate``; returns the windows they complete. A stateful model starts again from
        zero state where a run of exact zeros reaches SILENCE_RESET_SECONDS (its past no longer describes the scene)."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        cut = self._zeros.cut(samples, int(SILENCE_RESET_SECONDS * sample_rate)) if self.metadata.stateful else None
        if cut is None:
            return self._push(samples, sample_rate)
        results = self._push(samples[:cut], sample_rate)
        self.reset_state()
        return results + self.push(samples[cut:], sample_rate)

    @contextlib.contextmanager
    def _blas_limit(self):
        before = [lib.num_threads for lib in self._blas]
        for lib in self._blas:
            lib.set_num_threads(self.threads)
        try:
            yield
        finally:
            for lib, threads in zip(self._blas, before):
                lib.set_num_threads(threads)

    def _push(self, samples: np.ndarray, sample_rate: int) -> list[WindowResult]:
        needed = self._stream.samples_needed(self.plan.frames + self._windows * self.plan.hop_frames)
        if sample_rate != self.spec.sample_rate:
            if self._input_rate not in (None, sample_rate):
                raise ValueError(f"the stream changed rate from {self._input_rate} to {sample_rate} Hz; start a new classifier.")
            if self._resampler is None:
                self._resampler = soxr.ResampleStream(sample_rate, self.spec.sample_rate, 1, dtype="float32", quality="HQ")
            self._input_rate = sample_rate
            # soxr's output does not depend on how its input is split, and the first n input samples never give more
            # than n * ratio: input is resampled once per window, not per block (five 0.1-s calls took 52 µs, one
            # 0.5-s call 38), into the same samples.
            self._unresampled.append(samples)
            self._unresampled_size += samples.size
            self._input_samples += samples.size
            if self._input_samples * self.spec.sample_rate < (self._stream.samples_in + needed) * sample_rate:
                return []
            samples = self._resampler.resample_chunk(self._take_unresampled())
        # The frontend's cost per call is mostly fixed (numpy calls, the FFT's setup), so the samples wait until they
        # complete the next window and its frames are computed in one batch: same frames, same window times.
        self._pending.append(samples)
        self._pending_size += samples.size
        if self._pending_size < needed:
            return []
        with self._blas_limit():  # only around the numpy work, leaving the process's setting elsewhere
            return self._add(self._stream.push(self._take_pending()))

    def _take_pending(self) -> np.ndarray:
        samples = _joined(self._pending)
        self._pending, self._pending_size = [], 0
        return samples

    def _take_unresampled(self) -> np.ndarray:
        samples = _joined(self._unresampled)
        self._unresampled, self._unresampled_size = [], 0
        return samples

    def flush(self) -> list[WindowResult]:
        """End of stream: the last resampled samples and frames."""
        with self._blas_limit():
            return self._flush()

    def _flush(self) -> list[WindowResult]:
        tail = self._resampler.resample_chunk(self._take_unresampled(), last=True) if self._resampler else np.zeros(0, np.float32)
        new = self._stream.push(np.concatenate([self._take_pending(), tail]))
        return self._add(np.concatenate([new, self._stream.flush()], axis=1))

    def _add(self, new_frames: np.ndarray) -> list[WindowResult]:
        if new_frames.shape[1]:
            self._frames = np.concatenate([self._frames, new_frames], axis=1)
        available = self._first_frame + self._frames.shape[1]
        ends = list(self.plan.window_ends(available, self._windows))
        starts = [end - self.plan.frames - self._first_frame for end in ends]
        if len(ends) > 1 and self.backend.chunked:  # every hop this audio completed, in one call
            results = self.plan.hops(self.backend, self._frames[:, starts[0]:starts[0] + len(ends) * self.plan.hop_frames], ends)
        else:
            results = [self.plan.result(self.backend, self._frames[:, start:start + self.plan.frames], end, self._windows + k == 0)
                       for k, (start, end) in enumerate(zip(starts, ends))]
        self._windows += len(ends)
        keep_from = self.plan.frames + self._windows * self.plan.hop_frames - self.plan.frames  # next window's first frame
        drop = max(0, keep_from - self._first_frame)
        if drop:
            self._frames = self._frames[:, drop:]
            self._first_frame += drop
        return results


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


class ZeroRun:
    """The run of exact zeros at the end of the samples seen so far, across blocks; where a run first reaches a length."""

    def __init__(self):
        self.length, self.reached = 0, False  # the trailing run, and whether it already reached the limit

    def cut(self, samples: np.ndarray, limit: int) -> int | None:
        """The index in ``samples`` where a run of zeros first reaches ``limit`` samples (once per run), else None."""
        if samples.size and np.count_nonzero(samples) == samples.size:  # no zero at all, a live signal's usual block: 2 µs instead of 41
            self.length, self.reached = 0, False  # (a run that had reached the limit was reported when it did)
            return None
        nonzero = np.flatnonzero(samples)
        starts = np.concatenate([[0], nonzero + 1])
        lengths = np.concatenate([nonzero, [samples.size]]) - starts
        before = np.zeros_like(lengths)
        before[0] = self.length  # the first run continues the previous block's
        reaches = lengths + before >= limit
        reaches[0] &= not self.reached
        if reaches.any():
            run = int(np.argmax(reaches))
            self.length, self.reached = limit, True  # as of the cut: the caller passes the rest of the block again
            return int(starts[run] + limit - before[run])
        self.length = int(lengths[-1] + before[-1]) if nonzero.size == 0 else int(lengths[-1])
        self.reached = self.reached and nonzero.size == 0
        return None


def classify_wave(backend: Backend, wave: np.ndarray, hop_seconds: float | None = None) -> list[WindowResult]:
    """A whole signal at the model's sample rate: features of all of it, then the same windows a new stream would see (a
    stateful model from zero state; chunked, all its hops in one call)."""
    plan = WindowPlan(backend, hop_seconds=hop_seconds)
    frames = frame_features(backend.metadata.frontend, wave)
    ends = list(plan.window_ends(frames.shape[1], 0))
    if backend.metadata.stateful:
        backend.reset_state()
        if backend.chunked and len(ends) > 1:
            return plan.hops(backend, frames[:, :ends[-1]], ends)
    return [plan.result(backend, frames[:, end - plan.frames:end], end, i == 0) for i, end in enumerate(ends)]


def classify_offline(model_path: str | os.PathLike, audio_path: str | os.PathLike, hop_seconds: float | None = None) -> list[WindowResult]:
    """The whole file at once (``classify_wave`` of the decoded file)."""
    backend = load_backend(model_path)
    return classify_wave(backend, load_audio(audio_path, backend.metadata.frontend.sample_rate), hop_seconds)
