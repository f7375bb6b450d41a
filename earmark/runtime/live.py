"""`earmark listen --ui HOST:PORT`: one small page fed by server-sent events (no build step, no CDN).

The page (``static/``: index.html, live.js, live.css, shipped in the package) draws the scrolling log-mel
spectrogram, each label's current score against its threshold, the event log and the status figures; a model with a
scene head (scenes beside events) also gets its scene scores, the current scene marked. A browser
that connects late first receives the recent past (a canvas of spectrogram, events, scores, states, status).
Delivery: best effort per browser; a message counts as sent once written to a browser's connection, and a browser too
slow to keep up loses messages, counted as dropped. A label turning ON opens its row in the page's event log at once
(its event record fills the row in when the event ends).
"""

from __future__ import annotations

import base64
import queue
import threading
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from earmark.runtime.sinks import Delivery, to_json
from earmark.runtime.stream import WindowResult
from earmark.runtime.web import HttpService

STATIC = Path(__file__).with_name("static")
CANVAS_FRAMES = 800  # the spectrogram canvas's width in static/index.html: one column per feature frame
FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/live.js": ("live.js", "text/javascript; charset=utf-8"),
         "/live.css": ("live.css", "text/css; charset=utf-8")}


def message(kind: str, data: dict) -> bytes:
    """One server-sent event."""
    return f"event: {kind}\ndata: {to_json(data)}\n\n".encode()


def mel_message(features: np.ndarray, end: float) -> bytes:
    """Log-mel columns (n_mels, frames) as bytes 0..255 between their min and max, frame after frame, base64."""
    lo, hi = float(features.min()), float(features.max())
    levels = np.round((features - lo) / max(hi - lo, 1e-6) * 255).astype(np.uint8)
    return message("mel", {"t": round(end, 3), "lo": round(lo, 4), "hi": round(hi, 4), "frames": int(features.shape[1]),
                           "data": base64.b64encode(np.ascontiguousarray(levels.T).tobytes()).decode()})


def _state_message(label: str, since: str | None) -> bytes:
    return message("state", {"label": label, "on": since is not None, "since": since})


class LivePage:
    """A sink (records, states) and a window watcher (spectrogram, scores) that serves the page on ``host:port``."""

    name = "ui"

    def __init__(self, host: str, port: int, listener, source: str, client_buffer: int = 2000):
        meta, plan = listener.classifier.metadata, listener.classifier.plan
        self.labels, self.settings, self.client_buffer = meta.labels, listener.events.settings, client_buffer
        self.delivery = Delivery()
        self._hello = {"model": meta.model_name, "source": source, "labels": list(meta.labels),
                       "mode": "scenes" if listener.scenes else "events", "scene_labels": list(meta.scene_labels), "n_mels": meta.frontend.n_mels,
                       "frame_seconds": meta.frontend.hop_seconds, "hop_seconds": plan.hop_seconds}
        self._lock = threading.Lock()
        self._clients: list[queue.Queue] = []
        self._mel: deque[tuple[int, bytes]] = deque()  # (frames, message): as many as fill the canvas of a browser that connects
        self._mel_frames = 0
        self._records: deque[bytes] = deque(maxlen=50)
        self._latest: dict[str, bytes] = {}
        self._states: dict[str, str | None] = {label: None for label in meta.labels}  # label -> wall time it turned ON
        routes = {path: self._file(name, kind) for path, (name, kind) in FILES.items()}
        self.service = HttpService({**routes, "/stream": self._stream}, host, port, "--ui")

    @staticmethod
    def _file(name: str, kind: str):
        return lambda: (200, kind, (STATIC / name).read_bytes())

    def _thresholds(self) -> list[float]:
        return [self.settings.on(label) for label in self.labels]

    def _send(self, data: bytes) -> None:
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            try:
                client.put_nowait(data)  # counted as sent once written to the browser (_follow)
            except queue.Full:
                self.delivery.add("dropped")

    def window(self, result: WindowResult) -> None:
        """Every model window: its new spectrogram columns and the scores against the current thresholds."""
        values = {"t": round(result.end, 3), "scores": [round(float(p), 4) for p in result.clip], "thresholds": self._thresholds()}
        if result.scene is not None:  # a scene head beside the events
            values["scene"] = [round(float(p), 4) for p in result.scene]
        scores = message("scores", values)
        with self._lock:
            self._latest["scores"] = scores
            mel = mel_message(result.features, result.end) if result.features is not None and np.isfinite(result.features).all() else None
            if mel:
                self._keep_mel(result.features.shape[1], mel)
        if mel:
            self._send(mel)
        self._send(scores)

    def _keep_mel(self, frames: int, mel: bytes) -> None:
        """Keep the newest spectrogram messages that fill the canvas, whatever the frame and hop lengths (lock held)."""
        self._mel.append((frames, mel))
        self._mel_frames += frames
        while self._mel_frames - self._mel[0][0] >= CANVAS_FRAMES:
            self._mel_frames -= self._mel.popleft()[0]

    def emit(self, record: dict) -> None:
        data = message(record["type"], record)
        with self._lock:
            if record["type"] == "status":
                self._latest["status"] = data
            else:
                self._records.append(data)
        self._send(data)

    def state(self, label: str, on: bool) -> None:
        """A label turning ON opens its row in the page's event log at once; the event record fills it in when it ends."""
        since = datetime.now(timezone.utc).isoformat(timespec="milliseconds") if on else None
        with self._lock:
            self._states[label] = since
        self._send(_state_message(label, since))

    def _stream(self):
        client: queue.Queue = queue.Queue(maxsize=self.client_buffer)
        with self._lock:
            backlog = [message("hello", {**self._hello, "thresholds": self._thresholds()}), *(mel for _, mel in self._mel), *self._records,
                       *self._latest.values(), *(_state_message(label, since) for label, since in self._states.items())]
            self._clients.append(client)
        return 200, "text/event-stream", self._follow(client, backlog)

    def _follow(self, client: queue.Queue, backlog: list[bytes]) -> Iterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            for data in backlog:
                yield data
                self.delivery.add("sent")  # the server asks for the next message once this one is written
            while True:
                try:
                    data = client.get(timeout=15)
                except queue.Empty:
                    yield b": keep-alive\n\n"
                    continue
                if data is None:
                    return
                yield data
                self.delivery.add("sent")
        finally:
            with self._lock:
                self._clients.remove(client)

    def close(self) -> None:
        """Tell every browser the stream ended (the server itself is closed with the other services)."""
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            while True:
                try:
                    client.put_nowait(message("end", {}))
                    client.put_nowait(None)
                    break
                except queue.Full:
                    client.get_nowait()
