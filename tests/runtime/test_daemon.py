"""`earmark listen` as users run it: files, stdin, a software microphone through PortAudio, MQTT and Prometheus."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from .conftest import free_port
from .models import SAMPLE_RATE, export_detector, tone_track

LISTEN = [sys.executable, "-m", "earmark.cli", "listen"]


class Daemon:
    """`earmark listen` in a subprocess, its JSON lines collected by a reader thread."""

    def __init__(self, args, env=None, stdin=None):
        self.process = subprocess.Popen(LISTEN + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin, env=env, text=True)
        self.records: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.process.stdout, lambda l: self.records.put(json.loads(l))), daemon=True).start()
        threading.Thread(target=self._read, args=(self.process.stderr, self.stderr.append), daemon=True).start()

    @staticmethod
    def _read(stream, put):
        for line in stream:
            put(line)

    def wait_for(self, predicate, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                record = self.records.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if predicate(record):
                return record
        raise AssertionError(f"no matching record within {timeout} s; stderr: {''.join(self.stderr)[-2000:]}")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)


@pytest.fixture
def model(tmp_path):
    return export_detector(tmp_path / "tones.onnx", frame=True, hop=0.1)


def _wav(path, seconds, tones, rate=SAMPLE_RATE):
    sf.write(path, tone_track(seconds, tones, rate), rate)
    return path


def test_file_source_reports_events_as_json_lines(tmp_path, model):
    wav = _wav(tmp_path / "a.wav", 5.0, [(1.0, 2.0, 1000.0), (3.0, 3.6, 3000.0)])
    run = subprocess.run(LISTEN + [str(model), "--source", str(wav), "--fast"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    events = [r for r in records if r["type"] == "event"]
    assert [e["label"] for e in events] == ["tone_1k", "tone_3k"]
    assert abs(events[0]["onset"] - 1.0) <= 0.1 and abs(events[0]["offset"] - 2.0) <= 0.15
    assert {"onset_time", "offset_time", "score"} <= set(events[0])
    assert records[-1]["type"] == "status" and records[-1]["audio_seconds"] == pytest.approx(5.0, abs=0.2)


def test_stdin_pcm_like_ffmpeg_pipes_it(model):
    pcm = (tone_track(3.0, [(1.0, 2.0, 1000.0)]) * 32767).astype("<i2").tobytes()
    run = subprocess.run(LISTEN + [str(model), "--source", "-", "--rate", "16000"], input=pcm, capture_output=True, timeout=60)
    assert run.returncode == 0
    events = [json.loads(l) for l in run.stdout.decode().splitlines() if '"event"' in l]
    assert [e["label"] for e in events] == ["tone_1k"]
    assert b"stdin ended" in run.stderr


def test_bad_arguments_get_one_clear_sentence(tmp_path, model):
    run = subprocess.run(LISTEN + [str(model), "--source", "-", "--threshold", "dog=0.5"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "unknown labels ['dog']" in run.stderr
    run = subprocess.run(LISTEN + [str(model), "--source", "mic:no-such-device"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PULSE_SERVER": "unix:/nonexistent"})
    assert run.returncode == 1 and "no input device no-such-device" in run.stderr


def test_mqtt_states_events_and_availability(tmp_path, model, mosquitto):
    import paho.mqtt.client as mqtt

    received, connected = [], threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *a: (c.subscribe("earmark/#"), connected.set())
    client.on_message = lambda c, u, m: received.append((m.topic, m.payload.decode()))
    client.connect("127.0.0.1", mosquitto)
    client.loop_start()
    assert connected.wait(10)
    wav = _wav(tmp_path / "a.wav", 4.0, [(1.0, 2.0, 1000.0)])
    run = subprocess.run(LISTEN + [str(model), "--source", str(wav), "--fast", "--mqtt", f"127.0.0.1:{mosquitto}", "--ha-discovery"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    time.sleep(0.5)
    client.loop_stop()
    topics = [t for t, _ in received]
    assert ("earmark/availability", "online") in received and ("earmark/availability", "offline") in received
    assert [p for t, p in received if t == "earmark/tone_1k/state"] == ["ON", "OFF"]
    events = [json.loads(p) for t, p in received if t == "earmark/events"]
    assert [e["label"] for e in events] == ["tone_1k"]
    assert "earmark/tone_3k/state" not in topics


def test_prometheus_metrics_and_health_are_scraped_over_http(model):
    port = free_port()
    daemon = Daemon([str(model), "--source", "-", "--rate", "16000", "--metrics-port", str(port), "--status-every", "0.2"],
                    stdin=subprocess.PIPE)
    pcm = (tone_track(3.0, [(1.0, 2.0, 1000.0)]) * 32767).astype("<i2").tobytes()
    daemon.process.stdin.buffer.write(pcm)
    daemon.process.stdin.flush()
    daemon.wait_for(lambda r: r["type"] == "event")
    deadline = time.monotonic() + 20
    while True:  # the daemon reads stdin at its own pace: poll until all three seconds are in
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        seconds = float(next(l.split()[1] for l in text.splitlines() if l.startswith("earmark_audio_seconds_total")))
        if seconds >= 2.95 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert seconds == pytest.approx(3.0, abs=0.05)
    assert 'earmark_events_total{label="tone_1k"} 1' in text
    assert "earmark_inference_latency_ms_bucket" in text and "earmark_real_time_factor" in text
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read())
    assert health["healthy"] is True
    daemon.process.stdin.close()
    assert daemon.process.wait(20) == 0


def test_microphone_through_portaudio_survives_a_sound_server_restart(tmp_path, model, pulse):
    tone = _wav(tmp_path / "tone.wav", 1.2, [(0.1, 1.1, 1000.0)], rate=48000)
    daemon = Daemon([str(model), "--source", "mic", "--status-every", "0.3", "--min-duration", "0.3"], env=pulse.env)
    try:
        daemon.wait_for(lambda r: r["type"] == "status" and r["audio_seconds"] > 0.5, timeout=30)  # the stream is flowing
        pulse.play(tone)
        event = daemon.wait_for(lambda r: r["type"] == "event", timeout=20)
        assert event["label"] == "tone_1k" and 0.6 < event["offset"] - event["onset"] < 1.6
        pulse.stop()  # the sound server dies mid-stream
        time.sleep(1.0)
        pulse.start()
        daemon.wait_for(lambda r: r["type"] == "status" and r["reconnects"] >= 1, timeout=40)
        seen = daemon.wait_for(lambda r: r["type"] == "status", timeout=10)["audio_seconds"]
        daemon.wait_for(lambda r: r["type"] == "status" and r["audio_seconds"] > seen + 0.5, timeout=30)
        pulse.play(tone)
        again = daemon.wait_for(lambda r: r["type"] == "event", timeout=20)
        assert again["label"] == "tone_1k" and again["onset"] > event["offset"]
    finally:
        assert daemon.stop() == 0


def test_webhook_receives_each_event_as_json(tmp_path, model):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wav = _wav(tmp_path / "a.wav", 4.0, [(1.0, 2.0, 1000.0), (2.5, 3.0, 3000.0)])
        run = subprocess.run(LISTEN + [str(model), "--source", str(wav), "--fast", "--webhook", f"http://127.0.0.1:{server.server_port}/hook"],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert [r["label"] for r in received] == ["tone_1k", "tone_3k"] and all(r["type"] == "event" for r in received)
    finally:
        server.shutdown()


def test_sighup_reloads_thresholds_and_sigterm_stops_cleanly(tmp_path, model):
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text('{"tone_1k": 0.99}')
    daemon = Daemon([str(model), "--source", "-", "--rate", "16000", "--thresholds-file", str(thresholds), "--status-every", "0.2"],
                    stdin=subprocess.PIPE)
    daemon.wait_for(lambda r: r["type"] == "status")
    thresholds.write_text('{"tone_1k": 0.4}')
    daemon.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not any("thresholds reloaded" in line for line in daemon.stderr) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("thresholds reloaded" in line for line in daemon.stderr)
    thresholds.write_text("not json")
    daemon.process.send_signal(signal.SIGHUP)  # a broken file keeps the previous thresholds and the daemon alive
    time.sleep(0.3)
    assert daemon.process.poll() is None and any("keeping the previous thresholds" in line for line in daemon.stderr)
    assert daemon.stop() == 0
    last = None
    while not daemon.records.empty():
        last = daemon.records.get()
    assert last is not None and last["type"] == "status"  # the final record is flushed on SIGTERM
