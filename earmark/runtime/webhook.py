"""Webhook sink: each event or scene record POSTed as JSON, in order, from one background thread.

Delivery (at least once, in order): a 2xx reply counts as sent. A redirect (301, 302, 303, 307, 308: http -> https
behind a reverse proxy, say) is followed with the same POST and body, up to 5 hops; only the final reply counts. A 4xx
reply other than 408/429 means the receiver refuses that record: it is dropped, counted and logged. 5xx, 408, 429, timeouts, refused connections and replies
that are not HTTP are retried with exponential back-off (0.5 s doubling up to 30 s), each retry counted; records
arriving meanwhile wait in a queue of ``buffer`` (beyond it, new records are dropped and counted). At exit the
sender gets ``drain_seconds`` to empty the queue; what is left, the record in flight included, is counted as dropped
(a reply arriving after that changes no count) and logged.
"""

from __future__ import annotations

import http.client
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import deque

from earmark.runtime.sinks import Delivery, to_json

logger = logging.getLogger(__name__)

RETRYABLE_4XX = (408, 429)
MAX_REDIRECTS = 5


class _PostAgain(urllib.request.HTTPRedirectHandler):
    """Follows a redirect with the same method and body (urllib would turn a POST into a bodiless GET)."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return urllib.request.Request(newurl, req.data, dict(req.header_items()), origin_req_host=req.origin_req_host,
                                      unverifiable=True, method=req.get_method())


_opener = urllib.request.build_opener(_PostAgain)


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
        self.buffer = buffer
        self.delivery = Delivery()
        # records not yet counted, oldest first; the sender leaves the one in flight at the front until it counts it
        self._records: deque[dict] = deque()
        self._ready = threading.Condition()
        self._closing = self._closed = False
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._work, name="webhook", daemon=True)
        self._thread.start()

    def emit(self, record: dict) -> None:
        if record["type"] not in ("event", "scene"):
            return
        with self._ready:
            if len(self._records) >= self.buffer:
                self.delivery.add("dropped")
                return
            self._records.append(record)
            self._ready.notify()

    def state(self, label: str, on: bool) -> None:
        pass

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._records and not self._closing:
                    self._ready.wait()
                if not self._records or self._closed or self._abort.is_set():  # past the drain time: close() counts the rest
                    return
                record = self._records[0]
            try:
                outcome = self._deliver(to_json(record).encode())
            except Exception:  # a bug must not silence the sink: log it with its traceback, count the record, go on
                outcome = "dropped"
                logger.error("webhook: unexpected error, record dropped", exc_info=True)
            with self._ready:
                if self._closed:  # close() gave up waiting and counted this record as dropped
                    return
                self._records.popleft()
                self.delivery.add(outcome)

    def _post(self, body: bytes) -> tuple[str, str]:
        """One attempt: ("sent" | "refused" | "retry", why)."""
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        try:
            with _opener.open(request, timeout=self.timeout) as reply:
                reply.read()
            return "sent", ""
        except urllib.error.HTTPError as err:
            why = f"HTTP {err.code} {err.reason}"
            if 300 <= err.code < 400:  # a redirect loop, too many hops, or no Location: the receiver will not take it
                return "refused", f"{why}, redirected more than {MAX_REDIRECTS} times or to nowhere"
            return ("refused" if 400 <= err.code < 500 and err.code not in RETRYABLE_4XX else "retry"), why
        except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, resets; replies that are not HTTP
            return "retry", f"{type(err).__name__}: {err}"

    def _deliver(self, body: bytes) -> str:
        """POST until sent, refused or aborted: the record's outcome, "sent" or "dropped"."""
        backoff, retries = 0.5, 0
        while True:
            outcome, why = self._post(body)
            if outcome == "sent":
                if retries:
                    logger.info(f"webhook {self.url} delivers again (after {retries} retries)")
                return "sent"
            if outcome == "refused":
                logger.warning(f"webhook {self.url} refused a record ({why}); dropped it ({self.delivery.dropped + 1} dropped so far)")
                return "dropped"
            if retries == 0:
                logger.warning(f"webhook {self.url} failed ({why}); retrying with back-off up to {self.max_backoff:.0f} s")
            retries += 1
            self.delivery.add("retried")
            if self._abort.wait(backoff):
                return "dropped"
            backoff = min(backoff * 2, self.max_backoff)

    @property
    def waiting(self) -> int:
        return len(self._records)

    def close(self) -> None:
        """Give the sender ``drain_seconds`` to empty the queue; count and log what it could not deliver."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join(self.drain_seconds)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(self.timeout + 1)
        with self._ready:
            self._closed, left = True, len(self._records)  # the record in flight (a slow receiver) is among them
            self._records.clear()
        if left:
            self.delivery.add("dropped", left)
            logger.warning(f"webhook {self.url}: records still undelivered at exit were dropped "
                           f"({self.delivery.dropped} dropped in all)")
