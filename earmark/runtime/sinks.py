"""Where events go: JSON lines (stdout or a rotating file), MQTT, a webhook; and the Prometheus/health endpoint."""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
import threading
import time
import urllib.request
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol, TextIO


class Sink(Protocol):
    """Receives records (events, scenes, status) and label state changes."""

    def emit(self, record: dict) -> None: ...

    def state(self, label: str, on: bool) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """One JSON object per line on a stream (stdout by default)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def emit(self, record: dict) -> None:
        self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()

    def state(self, label: str, on: bool) -> None:
        pass

    def close(self) -> None:
        self.stream.flush()


class RotatingFileSink(JsonLinesSink):
    """JSON lines into ``path``, rotated at ``max_bytes`` keeping ``backups`` old files."""

    def __init__(self, path: str, max_bytes: int = 10_000_000, backups: int = 5):
        self._logger = logging.getLogger(f"earmark.events.{path}")
        self._logger.propagate = False
        self._handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups)
        self._logger.addHandler(self._handler)
        self._logger.setLevel(logging.INFO)

    def emit(self, record: dict) -> None:
        self._logger.info(json.dumps(record))

    def close(self) -> None:
        self._handler.close()
        self._logger.removeHandler(self._handler)


class MqttSink:
    """paho-mqtt: ``PREFIX/LABEL/state`` ON/OFF (retained), ``PREFIX/events`` JSON, retained availability with a last will.

    Messages published while the broker is away wait in a bounded buffer (``buffer`` records; the
    oldest are dropped and counted) and go out when the connection returns; paho reconnects with back-off.
    """

    def __init__(self, host: str, port: int = 1883, prefix: str = "earmark", labels: tuple[str, ...] = (),
                 username: str | None = None, password: str | None = None, tls: bool = False,
                 ha_discovery: bool = False, client_id: str = "earmark", buffer: int = 1000, log=print):
        import paho.mqtt.client as mqtt

        self.prefix, self.labels, self.ha_discovery, self.log = prefix.rstrip("/"), labels, ha_discovery, log
        self.dropped = 0
        self._pending: deque[tuple[str, str, bool]] = deque(maxlen=buffer)
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if username:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set()
        self.client.will_set(f"{self.prefix}/availability", "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a, **k: self._connected.clear()
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason, properties=None) -> None:
        if reason.is_failure:
            self.log(f"MQTT broker refused the connection ({reason}); check --mqtt-user/--mqtt-password")
            return
        client.publish(f"{self.prefix}/availability", "online", qos=1, retain=True)
        if self.ha_discovery:
            for label in self.labels:
                config = {"name": label, "state_topic": f"{self.prefix}/{label}/state", "availability_topic": f"{self.prefix}/availability",
                          "payload_on": "ON", "payload_off": "OFF", "unique_id": f"{self.prefix}_{label}", "device_class": "sound"}
                client.publish(f"homeassistant/binary_sensor/{self.prefix}/{label}/config", json.dumps(config), qos=1, retain=True)
        self._connected.set()
        with self._lock:
            while self._pending:
                client.publish(*self._pending.popleft()[:2], qos=1, retain=False)

    def _publish(self, topic: str, payload: str, retain: bool = False) -> None:
        if self._connected.is_set():
            self.client.publish(topic, payload, qos=1, retain=retain)
            return
        with self._lock:
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1
            self._pending.append((topic, payload, retain))

    def emit(self, record: dict) -> None:
        if record["type"] in ("event", "scene"):
            self._publish(f"{self.prefix}/{record['type']}s", json.dumps(record))

    def state(self, label: str, on: bool) -> None:
        self._publish(f"{self.prefix}/{label}/state", "ON" if on else "OFF", retain=True)

    def close(self) -> None:
        if self._connected.is_set():
            self.client.publish(f"{self.prefix}/availability", "offline", qos=1, retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()


class WebhookSink:
    """POSTs each event/scene record as JSON from a background thread; retries with back-off, drops past ``buffer``."""

    def __init__(self, url: str, buffer: int = 1000, timeout: float = 5.0, log=print):
        self.url, self.timeout, self.log = url, timeout, log
        self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=buffer)
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def emit(self, record: dict) -> None:
        if record["type"] == "status":
            return
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def state(self, label: str, on: bool) -> None:
        pass

    def _work(self) -> None:
        backoff = 0.5
        while True:
            record = self._queue.get()
            if record is None:
                return
            while True:
                try:
                    request = urllib.request.Request(self.url, json.dumps(record).encode(), {"Content-Type": "application/json"})
                    urllib.request.urlopen(request, timeout=self.timeout).close()
                    backoff = 0.5
                    break
                except OSError as err:
                    self.log(f"webhook {self.url} failed ({err}); retrying in {backoff:.1f} s")
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 30)

    def close(self) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout=self.timeout)


class Metrics:
    """Counters and a latency histogram in the Prometheus text format, plus /healthz."""

    BUCKETS = (0.5, 1, 2, 5, 10, 20, 50, 100, 250, 1000)

    def __init__(self):
        self.audio_seconds = 0.0
        self.processing_seconds = 0.0
        self.overruns = 0
        self.reconnects = 0
        self.events: dict[str, int] = {}
        self.latency_counts = [0] * (len(self.BUCKETS) + 1)
        self.latency_sum = 0.0
        self.last_audio = time.monotonic()
        self._lock = threading.Lock()

    def observe_latency(self, ms: float) -> None:
        with self._lock:
            self.latency_sum += ms
            index = next((i for i, b in enumerate(self.BUCKETS) if ms <= b), len(self.BUCKETS))
            self.latency_counts[index] += 1

    @property
    def real_time_factor(self) -> float:
        return self.processing_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def exposition(self) -> str:
        with self._lock:
            lines = [
                "# TYPE earmark_audio_seconds_total counter", f"earmark_audio_seconds_total {self.audio_seconds:.3f}",
                "# TYPE earmark_real_time_factor gauge", f"earmark_real_time_factor {self.real_time_factor:.5f}",
                "# TYPE earmark_overruns_total counter", f"earmark_overruns_total {self.overruns}",
                "# TYPE earmark_reconnects_total counter", f"earmark_reconnects_total {self.reconnects}",
                "# TYPE earmark_events_total counter",
                *[f'earmark_events_total{{label="{label}"}} {n}' for label, n in sorted(self.events.items())],
                "# TYPE earmark_inference_latency_ms histogram",
            ]
            cumulative = 0
            for bucket, count in zip((*map(str, self.BUCKETS), "+Inf"), self.latency_counts):
                cumulative += count
                lines.append(f'earmark_inference_latency_ms_bucket{{le="{bucket}"}} {cumulative}')
            lines += [f"earmark_inference_latency_ms_sum {self.latency_sum:.3f}", f"earmark_inference_latency_ms_count {cumulative}"]
        return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves /metrics and /healthz (503 when no audio arrived for ``stale_seconds``) on ``host:port``."""

    def __init__(self, metrics: Metrics, port: int, host: str = "127.0.0.1", stale_seconds: float = 10.0):
        self.metrics = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler):  # noqa: N805 - the request handler
                if handler.path == "/metrics":
                    body, code, kind = metrics.exposition().encode(), 200, "text/plain; version=0.0.4"
                elif handler.path == "/healthz":
                    age = time.monotonic() - metrics.last_audio
                    healthy = age < stale_seconds
                    body = json.dumps({"healthy": healthy, "seconds_since_audio": round(age, 2)}).encode()
                    code, kind = (200 if healthy else 503), "application/json"
                else:
                    body, code, kind = b"not found: try /metrics or /healthz\n", 404, "text/plain"
                handler.send_response(code)
                handler.send_header("Content-Type", kind)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args):  # noqa: N805 - keep stderr for the daemon's own messages
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
