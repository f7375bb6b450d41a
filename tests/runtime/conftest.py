"""Fixtures over the real services in services.py: a software microphone and a mosquitto broker."""

import shutil

import pytest

from .services import Mosquitto, PulseServer, free_port, mosquitto_binary  # noqa: F401 - free_port is used by the tests

__all__ = ["free_port"]


@pytest.fixture
def pulse():
    if not shutil.which("pulseaudio"):
        pytest.skip("pulseaudio is not installed (make test installs it)")
    server = PulseServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def broker(tmp_path):
    if not mosquitto_binary():
        pytest.skip("mosquitto is not installed (make test installs it)")
    server = Mosquitto(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def mosquitto(broker):
    return broker.port
