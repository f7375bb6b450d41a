"""The listening loop: source -> StreamingClassifier -> post-processing -> sinks, with status records and signals."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from earmark.runtime.metrics import Metrics
from earmark.runtime.model import read_thresholds
from earmark.runtime.postprocess import EventSettings, EventTracker, SceneTracker, top_k
from earmark.runtime.sinks import OutputClosed, Sink
from earmark.runtime.stream import StreamingClassifier, WindowResult


logger = logging.getLogger("earmark.runtime")


def log(message: str, level: int = logging.INFO) -> None:
    """Daemon messages go to the log (stderr); stdout carries only JSON records."""
    logger.log(level, message)


@dataclass
class ThresholdSources:
    """Per-label thresholds, later sources winning: the model's calibrated ones, the file (re-read on SIGHUP), the flags."""

    labels: tuple[str, ...]
    model: dict[str, float] = field(default_factory=dict)
    file: str | None = None
    flags: dict[str, float] = field(default_factory=dict)

    def resolve(self) -> dict[str, float]:
        """The merged thresholds; unknown labels are one sentence."""
        merged = {**self.model, **(read_thresholds(self.file) if self.file else {}), **self.flags}
        unknown = sorted(set(merged) - set(self.labels))
        if unknown:
            raise ValueError(f"thresholds for unknown labels {unknown}; the model's labels are {list(self.labels)}.")
        return merged


class Listener:
    """Runs until the source ends or a signal stops it; SIGHUP re-reads the thresholds file (merged as ThresholdSources says)."""

    def __init__(self, classifier: StreamingClassifier, source, sinks: list[Sink], settings: EventSettings,
                 scene_hold: float = 2.0, status_every: float = 10.0, thresholds: ThresholdSources | None = None,
                 metrics: Metrics | None = None, k: int = 3):
        self.classifier, self.source, self.sinks = classifier, source, list(sinks)
        meta = classifier.metadata
        self.labels = meta.labels
        self.scenes = meta.objective == "classify"
        settings.offset_lag = classifier.plan.offset_lag
        self.events = EventTracker(self.labels, settings)
        self.scene = SceneTracker(self.labels, hold=scene_hold)
        self.scene_head = SceneTracker(meta.scene_labels, hold=scene_hold) if meta.scene_labels else None  # scenes beside events
        self.status_every, self.thresholds, self.k = status_every, thresholds, k
        self.metrics = metrics or Metrics()
        self.metrics.sinks.update({sink.name: sink.delivery for sink in self.sinks})
        self.watchers: list[Callable[[WindowResult], None]] = []
        self.taps: list[Callable[[np.ndarray], None]] = []  # see every audio block as it arrives (recording.py)
        self._stop = self._reload = False
        self._code = 0
        self._started_wall = datetime.now(timezone.utc)
        self._latest: np.ndarray | None = None
        self._latest_scene: np.ndarray | None = None
        self._latencies: list[float] = []

    def attach(self, sink: Sink, watcher: Callable[[WindowResult], None] | None = None) -> None:
        """Add a sink (counted in status and /metrics) and optionally a watcher of every model window."""
        self.sinks.append(sink)
        self.metrics.sinks[sink.name] = sink.delivery
        if watcher:
            self.watchers.append(watcher)

    def stop(self, *_) -> None:
        self._stop = True

    def request_reload(self, *_) -> None:
        self._reload = True  # acted on by the loop, not inside the signal handler

    def reload(self) -> None:
        """Re-read the thresholds file; a bad file keeps the previous thresholds."""
        if not self.thresholds or not self.thresholds.file:
            log("SIGHUP: no --thresholds-file to re-read")
            return
        try:
            self.events.update_thresholds(self.thresholds.resolve())
            log(f"thresholds reloaded from {self.thresholds.file} (command-line --threshold flags still apply on top)")
        except ValueError as err:
            log(f"{err} (keeping the previous thresholds)", logging.WARNING)

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self.request_reload)

    def _wall(self, stream_seconds: float) -> str:
        """The wall-clock time of a stream time: start plus stream seconds, never later than now (a file read with
        --fast runs ahead of the clock)."""
        stamp = min(self._started_wall + timedelta(seconds=stream_seconds), datetime.now(timezone.utc))
        return stamp.isoformat(timespec="milliseconds")

    def _emit(self, record: dict) -> None:
        for sink in list(self.sinks):
            try:
                sink.emit(record)
            except OutputClosed as err:
                log(str(err), logging.WARNING)
                self.sinks.remove(sink)
                self._stop, self._code = True, 1

    def _handle(self, result: WindowResult) -> None:
        scores = [result.clip, *(s.probs for s in result.segments), *([] if result.scene is None else [result.scene])]
        if not all(np.isfinite(values).all() for values in scores):
            self.metrics.nonfinite_windows += 1  # the model itself produced NaN: never passed on as a score
            return
        self.metrics.latency.observe(result.latency_ms)
        self._latencies.append(result.latency_ms)
        self._latest = result.clip
        for watch in self.watchers:
            watch(result)
        if self.scene_head is not None and result.scene is not None:
            self._latest_scene = result.scene
            if record := self.scene_head.push(result.scene, result.end):
                self._emit({**record, "wall_time": self._wall(result.end)})
        if self.scenes:
            record = self.scene.push(result.clip, result.end)
            if record:
                self._emit({**record, "wall_time": self._wall(result.end)})
            return
        for segment in result.segments:  # decided when the window's last sample was heard
            self._publish(*self.events.push(segment, result.heard))

    def _publish(self, events, changes) -> None:
        for label, on in changes:
            for sink in self.sinks:
                sink.state(label, on)
        for event in events:
            self.metrics.events[event.label] += 1
            self._emit({**event.to_record(), "onset_time": self._wall(event.onset), "offset_time": self._wall(event.offset)})

    def _finite(self, block: np.ndarray) -> np.ndarray:
        """NaN/inf samples become silence (they would poison the features for good), counted and logged once."""
        bad = ~np.isfinite(block)
        if not bad.any():
            return block
        if not self.metrics.nonfinite_samples:
            log("the audio holds NaN or infinite samples; they are replaced by silence and counted (nonfinite_samples)", logging.WARNING)
        self.metrics.nonfinite_samples += int(bad.sum())
        return np.where(bad, np.float32(0), block)

    def status(self) -> dict:
        """A health record: audio processed, real-time factor, overruns, reconnects, latency, sinks, what it hears."""
        m = self.metrics
        record = {"type": "status", "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "audio_seconds": round(m.audio_seconds, 2), "rtf": round(m.real_time_factor, 4),
                  "overruns": getattr(self.source, "overruns", 0), "reconnects": getattr(self.source, "reconnects", 0),
                  "latency_ms_p50": round(float(np.median(self._latencies)), 3) if self._latencies else None,
                  "nonfinite_samples": m.nonfinite_samples,
                  **({"stateful": True, "state_resets": self.classifier.state_resets} if self.classifier.metadata.stateful else {}),
                  "sinks": {name: delivery.as_dict() for name, delivery in m.sinks.items()}}
        if self._latest is not None:
            record["hears"] = top_k(self.labels, self._latest, self.k)
        if self._latest_scene is not None:
            record["scene"] = top_k(self.scene_head.labels, self._latest_scene, 1)[0]
        self._latencies = self._latencies[-100:]
        return record

    def run(self) -> int:
        """Listen; returns the exit code (0 at the end of a file or on a stop signal, 1 when stdout was closed)."""
        rate = self.source.sample_rate
        next_status = time.monotonic() + self.status_every
        self._emit(self.status())
        while not self._stop:
            if self._reload:
                self._reload = False
                self.reload()
            block = self.source.read(0.5)
            if block is None:
                break
            reconnects = getattr(self.source, "reconnects", 0)
            if reconnects != self.metrics.reconnects:  # a gap in the source: a stateful model must not carry its past over it
                self.classifier.reset_state()
                self.metrics.reconnects = reconnects
                if self.classifier.metadata.stateful:
                    log("the source was reopened: the stateful model starts again from zero state (state_resets in status)")
            if block.size:
                block = self._finite(block)
                for tap in self.taps:
                    tap(block)
                started = time.perf_counter()
                for result in self.classifier.push(block, rate):
                    self._handle(result)
                self.metrics.processing_seconds += time.perf_counter() - started
                self.metrics.audio_seconds += block.size / rate
                self.metrics.last_audio = time.monotonic()
            self.metrics.overruns = getattr(self.source, "overruns", 0)
            if time.monotonic() >= next_status:
                self._emit(self.status())
                next_status = time.monotonic() + self.status_every
        for result in self.classifier.flush():
            self._handle(result)
        if not self.scenes:
            self._publish(*self.events.flush(self.classifier.seconds_processed))
        self._emit(self.status())
        for sink in self.sinks:
            sink.close()
        self.source.close()
        counts = {name: delivery.as_dict() for name, delivery in self.metrics.sinks.items()}
        lost = any(c["dropped"] for c in counts.values())  # undelivered records are a warning, shown even with -q
        log("delivered: " + "; ".join(f"{name} " + ", ".join(f"{n} {outcome}" for outcome, n in c.items()) for name, c in counts.items()),
            logging.WARNING if lost else logging.INFO)
        return self._code
