"""Audio sources for the daemon: a microphone (sounddevice/PortAudio), a file, or raw s16le PCM on stdin."""

from __future__ import annotations

import io
import select
import sys
import threading
import time
from collections import deque
from typing import BinaryIO

import numpy as np
import soundfile as sf


class FileSource:
    """A file in blocks, paced to real time unless ``fast``."""

    def __init__(self, path: str, fast: bool = False, block_seconds: float = 0.1):
        try:
            self._file = sf.SoundFile(path)
        except (sf.LibsndfileError, OSError) as err:
            raise ValueError(f"{path}: cannot open it as audio ({err}); pass a WAV/FLAC file, `mic` or `-` for stdin.") from None
        self.sample_rate = self._file.samplerate
        self.block = max(1, int(block_seconds * self.sample_rate))
        self.fast, self.overruns, self.reconnects = fast, 0, 0
        self._started = time.monotonic()
        self._delivered = 0

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        data = self._file.read(self.block, dtype="float32", always_2d=True)
        if not len(data):
            return None
        self._delivered += len(data)
        if not self.fast:
            ahead = self._delivered / self.sample_rate - (time.monotonic() - self._started)
            if ahead > 0:
                time.sleep(ahead)
        return data.mean(axis=1)

    def close(self) -> None:
        self._file.close()


class StdinSource:
    """Raw signed 16-bit little-endian PCM (``ffmpeg -f s16le -ac 1 -ar RATE -``)."""

    def __init__(self, sample_rate: int, channels: int = 1, block_seconds: float = 0.1, stream: BinaryIO | None = None):
        self.sample_rate, self.channels = sample_rate, channels
        self.stream = stream or sys.stdin.buffer
        self.block_bytes = 2 * channels * max(1, int(block_seconds * sample_rate))
        self.overruns, self.reconnects = 0, 0
        self._rest = b""

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        """Whatever arrived within ``timeout`` (possibly nothing, so signals are handled); None at the end of the stream."""
        try:
            ready, _, _ = select.select([self.stream], [], [], timeout)
        except (ValueError, OSError, io.UnsupportedOperation):  # not a selectable file: block on it
            ready = [self.stream]
        if not ready:
            return np.zeros(0, np.float32)
        data = self._rest + (self.stream.read1(self.block_bytes) if hasattr(self.stream, "read1") else self.stream.read(self.block_bytes))
        if len(data) == len(self._rest):
            return None
        usable = len(data) - len(data) % (2 * self.channels)
        self._rest = data[usable:]
        samples = np.frombuffer(data[:usable], "<i2").astype(np.float32) / 32768.0
        return samples.reshape(-1, self.channels).mean(axis=1)

    def close(self) -> None:
        pass


class MicSource:
    """PortAudio capture: the callback only copies into a bounded ring; a watchdog reopens a vanished device.

    A stream that finishes (the sound server died, the device was unplugged) or delivers no callback for
    ``stall_seconds`` is closed, PortAudio is re-initialised (its device list is taken at start-up) and the
    stream is reopened with exponential back-off. Overflows are counted, never fatal.
    """

    def __init__(self, device: str | int | None = None, ring_seconds: float = 10.0, stall_seconds: float = 5.0,
                 max_backoff: float = 8.0, log=print):
        import sounddevice as sd

        self.sd, self.device, self.log = sd, device, log
        self.stall_seconds, self.max_backoff = stall_seconds, max_backoff
        self.overruns = self.reconnects = 0
        self._blocks: deque[np.ndarray] = deque()
        self._buffered = 0
        self._lock, self._ready = threading.Lock(), threading.Event()
        self._stream = None
        self._finished = False
        self._backoff, self._next_try = 0.5, 0.0
        index = self._resolve()
        self.sample_rate = int(self.sd.query_devices(index)["default_samplerate"])
        self._ring_limit = int(ring_seconds * self.sample_rate)
        self._open(index)

    def _resolve(self) -> int:
        inputs = input_devices(self.sd)
        if self.device is None:
            default = self.sd.default.device[0]
            if default is not None and default >= 0:
                return int(default)
            if inputs:
                return inputs[0][0]
        elif isinstance(self.device, int) or str(self.device).isdigit():
            if any(i == int(self.device) for i, _ in inputs):
                return int(self.device)
        else:
            for i, d in inputs:
                if str(self.device).lower() in d["name"].lower():
                    return i
        names = ", ".join(f"{i}: {d['name']}" for i, d in inputs) or "none (is a sound server or a capture device available?)"
        raise ValueError(f"no input device {self.device if self.device is not None else '(default)'}; the input devices are {names}; "
                         "pass --source mic:NAME or mic:INDEX (`earmark listen --list-devices` shows them).")

    def _open(self, index: int) -> None:
        self._finished = False
        self._last_callback = time.monotonic()
        self._stream = self.sd.InputStream(device=index, channels=1, samplerate=self.sample_rate, dtype="float32",
                                           callback=self._callback, finished_callback=self._on_finished)
        self._stream.start()

    def _callback(self, indata, frames, time_info, status) -> None:
        if status.input_overflow:
            self.overruns += 1
        with self._lock:
            self._blocks.append(indata[:, 0].copy())
            self._buffered += frames
            while self._buffered > self._ring_limit:  # the reader fell behind: drop the oldest audio
                self._buffered -= len(self._blocks.popleft())
                self.overruns += 1
        self._last_callback = time.monotonic()
        self._ready.set()

    def _on_finished(self) -> None:
        self._finished = True
        self._ready.set()

    def healthy(self) -> bool:
        return self._stream is not None and not self._finished and time.monotonic() - self._last_callback < self.stall_seconds

    def _reconnect(self) -> None:
        now = time.monotonic()
        if now < self._next_try:
            return
        self._close_stream()
        try:
            self.sd._terminate()
            self.sd._initialize()
            self._open(self._resolve())
            self.reconnects += 1
            self._backoff = 0.5
            self.log(f"microphone reopened (reconnect {self.reconnects})")
        except Exception as err:  # PortAudio raises several types while the server is away
            self._stream = None
            self._next_try = now + self._backoff
            self.log(f"microphone unavailable ({str(err).splitlines()[0]}); retrying in {self._backoff:.1f} s")
            self._backoff = min(self._backoff * 2, self.max_backoff)

    def read(self, timeout: float = 0.5) -> np.ndarray:
        """Whatever arrived (possibly nothing); never None: a microphone does not end."""
        if not self.healthy():
            self._reconnect()
        self._ready.wait(timeout)
        with self._lock:
            blocks, self._blocks = list(self._blocks), deque()
            self._buffered = 0
            self._ready.clear()
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)

    def _close_stream(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close(ignore_errors=True)
            except Exception:  # the stream may already be gone with its server
                pass
            self._stream = None

    def close(self) -> None:
        self._close_stream()


def input_devices(sd=None) -> list[tuple[int, dict]]:
    """(index, PortAudio device info) of every device with input channels; re-initialises PortAudio once if it lists none."""
    if sd is None:
        import sounddevice as sd
    inputs = [(i, d) for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]
    if not inputs:  # PortAudio lists devices at initialisation (a sound server may have started since): look again
        sd._terminate()
        sd._initialize()
        inputs = [(i, d) for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]
    return inputs


def describe_inputs() -> str:
    """A table of the input devices as `earmark listen --list-devices` prints it (* marks the default)."""
    import sounddevice as sd

    inputs = input_devices(sd)
    if not inputs:
        return "no input devices: PortAudio finds no microphone (is a sound server running, is a capture device plugged in?)."
    default = sd.default.device[0]
    hosts = sd.query_hostapis()
    lines = ["  index  name (host API, channels, default rate)  -- use --source mic:INDEX or mic:NAME"]
    for i, d in inputs:
        lines.append(f"{'*' if i == default else ' '} {i:5d}  {d['name']} ({hosts[d['hostapi']]['name']}, "
                     f"{d['max_input_channels']} ch, {d['default_samplerate']:.0f} Hz)")
    return "\n".join(lines)


def open_source(spec: str, rate: int = 16000, fast: bool = False, log=print):
    """``mic``, ``mic:DEVICE`` (name or index), ``-`` (s16le on stdin at ``rate``) or a file path."""
    if spec == "-":
        return StdinSource(rate)
    if spec == "mic" or spec.startswith("mic:"):
        return MicSource(spec[4:] or None, log=log)
    return FileSource(spec, fast)
