"""A small threaded HTTP server for the daemon's endpoints (/metrics, /healthz, the live page and its event stream)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A route answers (status, content type, body); an iterable body is streamed chunk by chunk (server-sent events).
Route = Callable[[], tuple[int, str, "bytes | Iterable[bytes]"]]


def parse_address(text: str, flag: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT`` or ``PORT`` -> (host, port); a bad one is one sentence naming ``flag``."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{flag} {text!r} is not HOST:PORT with a port from 0 to 65535; write e.g. {flag} 127.0.0.1:8080.")
    return host.strip("[]") or default_host, int(port)


class HttpService:
    """Serves ``routes`` (path -> Route) on ``host:port`` from daemon threads; a busy port or bad host is one sentence."""

    def __init__(self, routes: dict[str, Route], host: str, port: int, flag: str):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler):  # noqa: N805 - the request handler
                route = routes.get(handler.path.split("?", 1)[0])
                if route is None:
                    code, kind, body = 404, "text/plain", f"not found: try {', '.join(sorted(routes))}\n".encode()
                else:
                    code, kind, body = route()
                handler.send_response(code)
                handler.send_header("Content-Type", kind)
                try:
                    if isinstance(body, bytes):
                        handler.send_header("Content-Length", str(len(body)))
                        handler.end_headers()
                        handler.wfile.write(body)
                        return
                    handler.send_header("Cache-Control", "no-cache")
                    handler.end_headers()
                    for chunk in body:
                        handler.wfile.write(chunk)
                        handler.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the client went away
                    pass
                finally:
                    if hasattr(body, "close"):
                        body.close()

            def log_message(handler, *args):  # noqa: N805 - keep stderr for the daemon's own messages
                pass

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as err:
            raise ValueError(f"cannot serve on {host}:{port} ({err.strerror or err}); pick another {flag} "
                             "or stop the program that holds it.") from None
        self.host, self.port = host, self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name=f"http {flag}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
