"""Real services for the daemon tests: a private PulseAudio server (software microphone) and a mosquitto broker."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@pytest.fixture
def pulse():
    if not shutil.which("pulseaudio"):
        pytest.skip("pulseaudio is not installed (make test installs it)")
    server = PulseServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def mosquitto(tmp_path):
    if not shutil.which("mosquitto") and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("mosquitto is not installed (make test installs it)")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.05)
    yield port
    process.terminate()
    process.wait(10)
