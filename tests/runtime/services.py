"""Real services for the daemon tests and benches: a private PulseAudio server (software microphone), a mosquitto
broker, a webhook receiver on loopback, and `earmark listen` itself in a subprocess. No pytest here: bench/ uses them too."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LISTEN = [sys.executable, "-m", "earmark.cli", "listen"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start on port {port}")
            time.sleep(0.05)


class PulseServer:
    """A private PulseAudio daemon whose null sink's monitor is the default microphone."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="earmark-pulse-"))
        os.chmod(self.dir, 0o700)
        (self.dir / "client.conf").write_text("autospawn = no\n")
        (self.dir / "home").mkdir()
        self.env = {**os.environ, "PULSE_SERVER": f"unix:{self.dir}/native", "PULSE_CLIENTCONFIG": str(self.dir / "client.conf"),
                    "XDG_RUNTIME_DIR": str(self.dir), "HOME": str(self.dir / "home")}
        (self.dir / "mic.pa").write_text("\n".join([
            ".fail",
            f"load-module module-native-protocol-unix socket={self.dir}/native auth-anonymous=1",
            "load-module module-null-sink sink_name=vmic_sink rate=48000 channels=1 format=s16le",
            "load-module module-remap-source source_name=vmic master=vmic_sink.monitor channels=1 channel_map=mono",
            "set-default-sink vmic_sink", "set-default-source vmic", ""]))
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["pulseaudio", "-n", "-F", str(self.dir / "mic.pa"), "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
             "--realtime=no", "--high-priority=no", "--log-target=stderr"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the private PulseAudio server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def play(self, wav: Path) -> None:
        subprocess.run(["paplay", "--device=vmic_sink", str(wav)], env=self.env, check=True, timeout=30)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


class Mosquitto:
    """A mosquitto broker on loopback that can be stopped and restarted on the same port.

    ``extra``: more configuration lines; ``persistent``: keep sessions, queued messages and retained ones across restarts.
    """

    def __init__(self, folder: Path, port: int | None = None, extra: str = "allow_anonymous true\n", persistent: bool = False):
        self.port = port or free_port()
        folder = Path(folder)
        self.conf = folder / f"mosquitto-{self.port}.conf"
        # started as root, mosquitto drops to its own user, which cannot read or write a private temporary folder
        keep_user = "user root\n" if os.geteuid() == 0 else ""
        persistence = f"persistence true\npersistence_location {folder}/\n" if persistent else "persistence false\n"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\n{extra}{persistence}{keep_user}")
        self.process = None

    def start(self) -> "Mosquitto":
        self.process = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, "mosquitto")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class Subscriber:
    """A paho client that records (topic, payload, retained) of everything under ``topic`` at QoS 1.

    With a ``client_id`` its session is persistent: a persistent broker queues messages for it while it is away.
    """

    def __init__(self, port: int, topic: str = "#", client_id: str = ""):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, str, bool]] = []
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not client_id)
        self.client.on_connect = lambda c, *a: (c.subscribe(topic, qos=1), self.connected.set())
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload.decode(), bool(m.retain)))
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("the test subscriber could not connect")

    def payloads(self, topic: str) -> list[str]:
        return [p for t, p, _ in list(self.messages) if t == topic]

    def wait_for(self, predicate, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"the subscriber never saw what it waited for; it saw {self.messages[-20:]}")
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class WebhookServer:
    """A real HTTP receiver on loopback. ``reply(record, attempt)`` returns an HTTP status (a 3xx redirects to
    ``/hook/moved`` on the same server), "garbage" (bytes that are not HTTP) or "trickle" (a 200 reply sent one byte
    every 0.1 s). A GET is answered 200 with nothing received, as a site behind a redirect would."""

    def __init__(self, reply=lambda record, attempt: 204, port: int = 0):
        self.received: list[dict] = []
        self.attempts: dict[str, int] = {}
        self.gets = 0
        self.reply, self.port, self.server = reply, port, None

    def start(self) -> "WebhookServer":
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hook.gets += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                record = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = json.dumps(record, sort_keys=True)
                hook.attempts[key] = hook.attempts.get(key, 0) + 1
                answer = hook.reply(record, hook.attempts[key])
                if answer in ("garbage", "trickle"):
                    self.close_connection = True
                    if answer == "garbage":
                        self.wfile.write(b"\x00\x01 this is not HTTP\r\n\r\n")
                        return
                    for byte in b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n":
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.1)
                    hook.received.append(record)
                    return
                if 200 <= answer < 300:
                    hook.received.append(record)
                self.send_response(answer)
                if 300 <= answer < 400:
                    self.send_header("Location", "/hook/moved")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def _refuse_constant(name: str):
    raise ValueError(f"the daemon wrote {name}, which is not JSON")


class Daemon:
    """`earmark listen` in a subprocess, its JSON lines collected by a reader thread."""

    def __init__(self, args, env=None, stdin=None):
        self.process = subprocess.Popen(LISTEN + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=stdin, env=env, text=True)
        self.records: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.process.stdout, self._record), daemon=True).start()
        threading.Thread(target=self._read, args=(self.process.stderr, self.stderr.append), daemon=True).start()

    def _record(self, line: str) -> None:
        record = json.loads(line, parse_constant=_refuse_constant)
        self.seen.append(record)
        self.records.put(record)

    @staticmethod
    def _read(stream, put):
        for line in stream:
            put(line)

    def feed(self, samples) -> None:
        """Write float samples as s16le PCM to the daemon's stdin."""
        import numpy as np

        self.process.stdin.buffer.write((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
        self.process.stdin.flush()

    def wait_for(self, predicate, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                record = self.records.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.records.empty():
                    break
                continue
            if predicate(record):
                return record
        raise AssertionError(f"no matching record within {timeout} s; stderr: {''.join(self.stderr)[-2000:]}")

    def wait_for_log(self, text: str, timeout=30.0, count: int = 1) -> None:
        """Wait until ``text`` appeared in ``count`` lines of stderr."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(text in line for line in list(self.stderr)) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in stderr within {timeout} s: {''.join(self.stderr)[-2000:]}")

    def stop(self, timeout=30):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        time.sleep(0.1)  # let the reader threads take the last lines
        return code
