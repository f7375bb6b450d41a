"""Webhook sink: each event or scene record POSTed as JSON, in order, from one background thread.

Delivery (at least once, in order): a 2xx reply counts as sent. A 4xx reply other than 408/429 means the receiver
refuses that record: it is dropped, counted and logged. 5xx, 408, 429, timeouts, refused connections and replies
that are not HTTP are retried with exponential back-off (0.5 s doubling up to 30 s), each retry counted; records
arriving meanwhile wait in a queue of ``buffer`` (beyond it, new records are dropped and counted). At exit the
sender gets ``drain_seconds`` to empty the queue; what is left is counted as dropped and logged.
"""

from __future__ import annotations

import http.client
import logging
import queue
import threading
import urllib.error
import urllib.parse
import urllib.request

from earmark.runtime.sinks import Delivery, to_json

logger = logging.getLogger(__name__)

RETRYABLE_4XX = (408, 429)


def check_url(url: str) -> str:
    """An http(s) URL with a host, or one sentence saying what to write."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--webhook {url!r} is not an http:// or https:// URL with a host; write e.g. --webhook http://127.0.0.1:8123/hook.")
    return url


class WebhookSink:
    """POSTs records to ``url``; see the module docstring for what is retried, dropped and counted."""

    name = "webhook"

    def __init__(self, url: str, buffer: int = 1000, timeout: float = 5.0, drain_seconds: float = 5.0,
                 max_backoff: float = 30.0):
        self.url, self.timeout, self.drain_seconds, self.max_backoff = check_url(url), timeout, drain_seconds, max_backoff
        self.delivery = Delivery()
        self._queue: queue.Queue = queue.Queue(maxsize=buffer)
        self._closing, self._abort = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._work, name="webhook", daemon=True)
        self._thread.start()

    def emit(self, record: dict) -> None:
        if record["type"] not in ("event", "scene"):
            return
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.delivery.add("dropped")

    def state(self, label: str, on: bool) -> None:
        pass

    def _work(self) -> None:
        while not self._abort.is_set():
            try:
                record = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            try:
                self._deliver(to_json(record).encode())
            except Exception:  # a bug must not silence the sink: log it with its traceback, count the record, go on
                self.delivery.add("dropped")
                logger.error("webhook: unexpected error, record dropped", exc_info=True)

    def _post(self, body: bytes) -> tuple[str, str]:
        """One attempt: ("sent" | "refused" | "retry", why)."""
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                reply.read()
            return "sent", ""
        except urllib.error.HTTPError as err:
            why = f"HTTP {err.code} {err.reason}"
            return ("refused" if 400 <= err.code < 500 and err.code not in RETRYABLE_4XX else "retry"), why
        except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, resets; replies that are not HTTP
            return "retry", f"{type(err).__name__}: {err}"

    def _deliver(self, body: bytes) -> None:
        backoff, retries = 0.5, 0
        while True:
            outcome, why = self._post(body)
            if outcome == "sent":
                self.delivery.add("sent")
                if retries:
                    logger.info(f"webhook {self.url} delivers again (after {retries} retries)")
                return
            if outcome == "refused":
                self.delivery.add("dropped")
                logger.warning(f"webhook {self.url} refused a record ({why}); dropped it ({self.delivery.dropped} dropped so far)")
                return
            if retries == 0:
                logger.warning(f"webhook {self.url} failed ({why}); retrying with back-off up to {self.max_backoff:.0f} s")
            retries += 1
            self.delivery.add("retried")
            if self._abort.wait(backoff):
                self.delivery.add("dropped")
                return
            backoff = min(backoff * 2, self.max_backoff)

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        """Give the sender ``drain_seconds`` to empty the queue; count and log what it could not deliver."""
        self._closing.set()
        self._thread.join(self.drain_seconds)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(self.timeout + 1)
        left = self._queue.qsize()
        if left:
            self.delivery.add("dropped", left)
        if self._abort.is_set():
            logger.warning(f"webhook {self.url}: records still undelivered at exit were dropped "
                     f"({self.delivery.dropped} dropped in all)")
