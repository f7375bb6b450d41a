"""The daemon's Prometheus metrics through prometheus-client (process and platform metrics included), and /healthz."""

from __future__ import annotations

import json
import time
from collections import Counter

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from earmark.runtime.sinks import Delivery
from earmark.runtime.web import HttpService

LATENCY_BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 250, 1000)


class Metrics:
    """The daemon's figures: read by status records and, at scrape time, by Prometheus (a custom collector)."""

    def __init__(self) -> None:
        self.audio_seconds = 0.0
        self.processing_seconds = 0.0
        self.overruns = 0
        self.reconnects = 0
        self.nonfinite_samples = 0
        self.nonfinite_windows = 0
        self.events: Counter[str] = Counter()
        self.sinks: dict[str, Delivery] = {}
        self.last_audio = time.monotonic()
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.latency = Histogram("earmark_inference_latency_ms", "Model run time per window in milliseconds",
                                 buckets=LATENCY_BUCKETS_MS, registry=self.registry)
        self.registry.register(self)

    @property
    def real_time_factor(self) -> float:
        return self.processing_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def collect(self):
        """prometheus-client collector protocol: the current figures as metric families."""
        yield CounterMetricFamily("earmark_audio_seconds", "Seconds of audio processed", value=self.audio_seconds)
        yield GaugeMetricFamily("earmark_real_time_factor", "Processing time over audio time", value=self.real_time_factor)
        yield CounterMetricFamily("earmark_overruns", "Audio blocks lost by the source (overflows)", value=self.overruns)
        yield CounterMetricFamily("earmark_reconnects", "Times the source was reopened", value=self.reconnects)
        yield CounterMetricFamily("earmark_nonfinite_samples", "NaN or infinite input samples replaced by silence",
                                  value=self.nonfinite_samples)
        yield CounterMetricFamily("earmark_nonfinite_windows", "Model windows with NaN or infinite scores (skipped)",
                                  value=self.nonfinite_windows)
        events = CounterMetricFamily("earmark_events", "Events reported per label", labels=["label"])
        for label, n in sorted(self.events.items()):
            events.add_metric([label], n)
        yield events
        messages = CounterMetricFamily("earmark_sink_messages", "Records per sink and outcome (sent, retried, dropped)",
                                       labels=["sink", "outcome"])
        for sink, delivery in self.sinks.items():
            for outcome, n in delivery.as_dict().items():
                messages.add_metric([sink, outcome], n)
        yield messages

    def health(self, stale_seconds: float) -> tuple[bool, dict]:
        age = time.monotonic() - self.last_audio
        return age < stale_seconds, {"healthy": age < stale_seconds, "seconds_since_audio": round(age, 2)}


def serve_metrics(metrics: Metrics, host: str, port: int, stale_seconds: float = 10.0) -> HttpService:
    """/metrics (Prometheus text format) and /healthz (503 when no audio arrived for ``stale_seconds``)."""

    def scrape():
        return 200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry)

    def healthz():
        healthy, body = metrics.health(stale_seconds)
        return (200 if healthy else 503), "application/json", json.dumps(body).encode()

    return HttpService({"/metrics": scrape, "/healthz": healthz}, host, port, "--metrics-port")
