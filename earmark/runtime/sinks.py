"""Where records go, and what each sink promises: the Sink protocol, delivery counters, JSON lines on stdout or a rotating file.

MQTT and webhook sinks live in ``mqtt.py`` and ``webhook.py``; the live page in ``live.py``.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import threading
from typing import Protocol, TextIO


class OutputClosed(RuntimeError):
    """The reader of stdout went away (``earmark listen ... | head``)."""


class Delivery:
    """What a sink did with the records it was given: ``sent`` (delivered or acknowledged), ``retried`` (sent again after a
    failure or an outage), ``dropped`` (never delivered: refused, over the buffer, or still undelivered at exit)."""

    FIELDS = ("sent", "retried", "dropped")

    def __init__(self) -> None:
        self.sent = self.retried = self.dropped = 0
        self._lock = threading.Lock()

    def add(self, field: str, n: int = 1) -> None:
        """Count ``n`` records under ``field`` (thread-safe: sinks count from their own threads)."""
        with self._lock:
            setattr(self, field, getattr(self, field) + n)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {field: getattr(self, field) for field in self.FIELDS}


class Sink(Protocol):
    """Receives records (events, scenes, status) and label state changes; counts what it delivered in ``delivery``."""

    name: str
    delivery: Delivery

    def emit(self, record: dict) -> None: ...

    def state(self, label: str, on: bool) -> None: ...

    def close(self) -> None: ...


def to_json(record: dict) -> str:
    """Strict JSON (a NaN or infinity is a bug upstream, never written as the invalid ``NaN``)."""
    return json.dumps(record, allow_nan=False)


class JsonLinesSink:
    """One JSON object per line on a stream (stdout by default); synchronous, so every record is sent or the daemon stops."""

    name = "stdout"

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        if self.stream is None:  # started with stdout closed (`>&-`): Python has no sys.stdout at all
            raise OutputClosed("stdout is closed; pass --sink file:PATH to write the records to a file, or give the daemon a stdout.")
        self.delivery = Delivery()

    def emit(self, record: dict) -> None:
        try:
            self.stream.write(to_json(record) + "\n")
            self.stream.flush()
        except BrokenPipeError:
            # keep the interpreter's final flush from printing a second traceback about the same pipe
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
            raise OutputClosed("stdout was closed by the program reading it; stopping "
                               "(use --sink file:PATH to keep records when no one reads stdout).") from None
        self.delivery.add("sent")

    def state(self, label: str, on: bool) -> None:
        pass

    def close(self) -> None:
        try:
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass


class RotatingFileSink(JsonLinesSink):
    """JSON lines into ``path``, rotated at ``max_bytes`` keeping ``backups`` old files."""

    name = "file"

    def __init__(self, path: str, max_bytes: int = 10_000_000, backups: int = 5):
        self.delivery = Delivery()
        self._logger = logging.getLogger(f"earmark.events.{path}")
        self._logger.propagate = False
        try:
            self._handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups)
        except OSError as err:
            raise ValueError(f"--sink file:{path}: cannot write there ({err.strerror}); pick a writable path.") from None
        self._logger.addHandler(self._handler)
        self._logger.setLevel(logging.INFO)

    def emit(self, record: dict) -> None:
        self._logger.info(to_json(record))
        self.delivery.add("sent")

    def close(self) -> None:
        self._handler.close()
        self._logger.removeHandler(self._handler)
