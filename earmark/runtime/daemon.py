"""The listening loop: source -> StreamingClassifier -> post-processing -> sinks, with status records and signals."""

from __future__ import annotations

import signal
import sys
import time
from datetime import datetime, timedelta, timezone

import numpy as np

from earmark.runtime.model import read_thresholds
from earmark.runtime.postprocess import EventSettings, EventTracker, SceneTracker, top_k
from earmark.runtime.sinks import Metrics, Sink
from earmark.runtime.stream import StreamingClassifier, WindowResult


def log(message: str) -> None:
    """Daemon messages go to stderr; stdout carries only JSON records."""
    print(f"earmark listen: {message}", file=sys.stderr, flush=True)


class Listener:
    """Runs until the source ends or a signal stops it; SIGHUP reloads ``thresholds_file``."""

    def __init__(self, classifier: StreamingClassifier, source, sinks: list[Sink], settings: EventSettings,
                 scene_hold: float = 2.0, status_every: float = 10.0, thresholds_file: str | None = None,
                 metrics: Metrics | None = None, k: int = 3):
        self.classifier, self.source, self.sinks = classifier, source, sinks
        meta = classifier.metadata
        self.labels = meta.labels
        self.scenes = meta.activation == "softmax" and meta.task == "clip"
        settings.offset_lag = classifier.plan.offset_lag
        self.events = EventTracker(self.labels, settings)
        self.scene = SceneTracker(self.labels, hold=scene_hold)
        self.status_every, self.thresholds_file, self.k = status_every, thresholds_file, k
        self.metrics = metrics or Metrics()
        self._stop = False
        self._started_wall = datetime.now(timezone.utc)
        self._latest: np.ndarray | None = None
        self._latencies: list[float] = []

    def stop(self, *_) -> None:
        self._stop = True

    def reload(self, *_) -> None:
        if self.thresholds_file:
            try:
                self.events.update_thresholds(read_thresholds(self.thresholds_file))
                log(f"thresholds reloaded from {self.thresholds_file}")
            except ValueError as err:
                log(f"{err} (keeping the previous thresholds)")

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self.reload)

    def _wall(self, stream_seconds: float) -> str:
        return (self._started_wall + timedelta(seconds=stream_seconds)).isoformat(timespec="milliseconds")

    def _emit(self, record: dict) -> None:
        for sink in self.sinks:
            sink.emit(record)

    def _handle(self, result: WindowResult) -> None:
        self.metrics.observe_latency(result.latency_ms)
        self._latencies.append(result.latency_ms)
        self._latest = result.clip
        if self.scenes:
            record = self.scene.push(result.clip, result.end)
            if record:
                self._emit({**record, "wall_time": self._wall(result.end)})
            return
        for segment in result.segments:
            self._publish(*self.events.push(segment))

    def _publish(self, events, changes) -> None:
        for label, on in changes:
            for sink in self.sinks:
                sink.state(label, on)
        for event in events:
            self.metrics.events[event.label] = self.metrics.events.get(event.label, 0) + 1
            self._emit({**event.to_record(), "onset_time": self._wall(event.onset), "offset_time": self._wall(event.offset)})

    def status(self) -> dict:
        """A health record: audio processed, real-time factor, overruns, reconnects, latency, what it hears."""
        m = self.metrics
        record = {"type": "status", "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "audio_seconds": round(m.audio_seconds, 2), "rtf": round(m.real_time_factor, 4),
                  "overruns": getattr(self.source, "overruns", 0), "reconnects": getattr(self.source, "reconnects", 0),
                  "latency_ms_p50": round(float(np.median(self._latencies)), 3) if self._latencies else None}
        dropped = {type(s).__name__: s.dropped for s in self.sinks if getattr(s, "dropped", 0)}
        if dropped:
            record["dropped"] = dropped
        if self._latest is not None:
            record["hears"] = top_k(self.labels, self._latest, self.k)
        self._latencies = self._latencies[-100:]
        return record

    def run(self) -> int:
        """Listen; returns the exit code (0 at the end of a file or on a stop signal)."""
        rate = self.source.sample_rate
        next_status = time.monotonic() + self.status_every
        self._emit(self.status())
        while not self._stop:
            block = self.source.read(0.5)
            if block is None:
                break
            if block.size:
                started = time.perf_counter()
                for result in self.classifier.push(block, rate):
                    self._handle(result)
                self.metrics.processing_seconds += time.perf_counter() - started
                self.metrics.audio_seconds += block.size / rate
                self.metrics.last_audio = time.monotonic()
            self.metrics.overruns = getattr(self.source, "overruns", 0)
            self.metrics.reconnects = getattr(self.source, "reconnects", 0)
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
        return 0
