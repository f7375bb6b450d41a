"""`earmark listen` as users run it: files, stdin, a software microphone through PortAudio, MQTT, Prometheus, signals, bad input."""

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from datetime import datetime, timezone

import pytest
import soundfile as sf

from .models import SAMPLE_RATE, export_causal_detector, export_detector, tone_track
from .services import LISTEN, Daemon, free_port

@pytest.fixture
def model(tmp_path):
    return export_detector(tmp_path / "tones.onnx", frame=True, hop=0.1)


def _wav(path, seconds, tones, rate=SAMPLE_RATE):
    sf.write(path, tone_track(seconds, tones, rate), rate)
    return path


def test_file_source_reports_events_as_json_lines(tmp_path, model):
    wav = _wav(tmp_path / "a.wav", 5.0, [(1.0, 2.0, 1000.0), (3.0, 3.6, 3000.0)])
    run = subprocess.run(LISTEN + [str(model), "--source", str(wav), "--fast"], capture_output=True, text=True, timeout=60)
    finished = datetime.now(timezone.utc)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    events = [r for r in records if r["type"] == "event"]
    assert [e["label"] for e in events] == ["tone_1k", "tone_3k"]
    assert abs(events[0]["onset"] - 1.0) <= 0.1 and abs(events[0]["offset"] - 2.0) <= 0.15
    assert {"onset_time", "offset_time", "score"} <= set(events[0])
    for event in events:  # ON announced when the 0.1-s hop that holds the onset was heard
        assert event["latency"] == pytest.approx(event["detected"] - event["onset"], abs=1e-3) and 0 < event["latency"] <= 0.12
    assert all(datetime.fromisoformat(e[key]) <= finished for e in events for key in ("onset_time", "offset_time"))  # --fast: never ahead
    assert records[-1]["type"] == "status" and records[-1]["audio_seconds"] == pytest.approx(5.0, abs=0.2)


def test_stdin_pcm_like_ffmpeg_pipes_it(model):
    pcm = (tone_track(3.0, [(1.0, 2.0, 1000.0)]) * 32767).astype("<i2").tobytes()
    run = subprocess.run(LISTEN + [str(model), "--source", "-", "--rate", "16000"], input=pcm, capture_output=True, timeout=60)
    assert run.returncode == 0
    events = [json.loads(l) for l in run.stdout.decode().splitlines() if '"event"' in l]
    assert [e["label"] for e in events] == ["tone_1k"]
    assert b"stdin ended" in run.stderr


def test_a_stateful_model_reports_a_tone_on_within_150_ms_through_stdin_in_real_time(tmp_path):
    """40-ms hops with state instead of windows: the ON is announced (stream time) within 150 ms of the tone's start."""
    model = export_causal_detector(tmp_path / "causal.onnx")
    pcm = (tone_track(3.0, [(1.0, 2.0, 1000.0)]) * 32767).astype("<i2").tobytes()
    daemon = subprocess.Popen(LISTEN + [str(model), "--source", "-", "--rate", "16000"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    block = SAMPLE_RATE // 50 * 2  # 20 ms of s16le, written at the pace a capture would
    for start in range(0, len(pcm), block):
        daemon.stdin.write(pcm[start:start + block])
        daemon.stdin.flush()
        time.sleep(0.02)
    out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    records = [json.loads(line) for line in out.decode().splitlines()]
    (event,) = [r for r in records if r["type"] == "event"]
    assert event["label"] == "tone_1k" and abs(event["onset"] - 1.0) <= 0.05
    assert 0 < event["detected"] - 1.0 <= 0.15 and event["latency"] <= 0.15
    assert records[-1]["stateful"] is True and records[-1]["state_resets"] == 0


def test_a_stateful_model_refuses_another_hop_in_one_sentence(tmp_path):
    model = export_causal_detector(tmp_path / "causal.onnx")
    run = subprocess.run(LISTEN + [str(model), "--source", "-", "--hop", "0.25"], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 1 and "a stateful model runs hop by hop on the 0.04 s hop" in run.stderr and "drop --hop" in run.stderr
    assert "Traceback" not in run.stderr


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
    client.on_connect = lambda c, *a: (c.subscribe([("earmark/#", 1), ("homeassistant/#", 1)]), connected.set())
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
    assert ("earmark/availability", "online") in received and ("earmark/availability", "offline") in received
    # every label's OFF is published at connect; a --fast file can be heard before the broker answers, and then the
    # state it is in by then (here ON) is the first one published: never a stale or repeated state
    assert [p for t, p in received if t == "earmark/tone_1k/state"] in (["OFF", "ON", "OFF"], ["ON", "OFF"])
    events = [json.loads(p) for t, p in received if t == "earmark/events"]
    assert [e["label"] for e in events] == ["tone_1k"]
    assert [p for t, p in received if t == "earmark/tone_3k/state"] == ["OFF"]
    config = json.loads(next(p for t, p in received if t.endswith("/tone_1k/config")))
    assert config["state_topic"] == "earmark/tone_1k/state" and config["device"]["identifiers"] == [f"earmark-{socket.gethostname()}"]
    assert config["device"]["manufacturer"] == "earmark" and config["device"]["model"] == "tone-detector"


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
    assert "process_resident_memory_bytes" in text and 'earmark_sink_messages_total{outcome="sent",sink="stdout"}' in text
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


def _fed(daemon, seconds):
    """Wait until the daemon has processed ``seconds`` of audio (it reads stdin at its own pace)."""
    daemon.wait_for(lambda r: r["type"] == "status" and r["audio_seconds"] >= seconds - 0.05)


def test_sighup_merges_file_over_calibrated_thresholds_and_flags_on_top(tmp_path):
    model = export_detector(tmp_path / "calibrated.onnx", frame=True, hop=0.1, thresholds={"tone_3k": 1.0})  # calibrated: never
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text("{}")
    daemon = Daemon([model, "--source", "-", "--rate", "16000", "--thresholds-file", thresholds, "--threshold", "tone_1k=1.0",
                     "--status-every", "0.1"], stdin=subprocess.PIPE)
    both = tone_track(3.0, [(0.5, 1.5, 1000.0), (1.5, 2.5, 3000.0)])
    daemon.wait_for(lambda r: r["type"] == "status")  # the signal handlers are installed
    daemon.process.send_signal(signal.SIGHUP)  # the unchanged file must keep the flag and the calibrated threshold
    daemon.wait_for_log("thresholds reloaded")
    daemon.feed(both)
    _fed(daemon, 3.0)
    thresholds.write_text('{"tone_1k": 0.4, "tone_3k": 0.4}')  # the file beats the calibrated 1.0, not the flag
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for_log("thresholds reloaded", count=2)
    daemon.feed(both)
    _fed(daemon, 6.0)
    thresholds.write_text("not json")
    daemon.process.send_signal(signal.SIGHUP)  # a broken file keeps the previous thresholds and the daemon alive
    daemon.wait_for_log("keeping the previous thresholds")
    assert daemon.process.poll() is None
    daemon.process.stdin.close()
    assert daemon.process.wait(20) == 0
    time.sleep(0.1)
    events = [r for r in daemon.seen if r["type"] == "event"]
    assert [e["label"] for e in events] == ["tone_3k"] and 4.4 <= events[0]["onset"] <= 4.7  # the second feed's 3 kHz tone
    assert daemon.seen[-1]["type"] == "status"  # the final record is flushed at the end


def test_sighup_during_start_up_is_a_reload_not_a_death(tmp_path, model):
    fifo = tmp_path / "thresholds.json"
    os.mkfifo(fifo)  # the daemon blocks reading it at start-up, before it takes over its signals
    daemon = Daemon([model, "--source", "-", "--rate", "16000", "--thresholds-file", fifo], stdin=subprocess.PIPE)
    try:
        with open(fifo, "w") as writer:  # opens once the daemon has opened the file: it is starting up
            daemon.process.send_signal(signal.SIGHUP)
            writer.write('{"tone_1k": 0.5}')
        daemon.wait_for_log("listening to")
        with open(fifo, "w") as writer:  # the reload the start-up SIGHUP asked for reads the file again
            writer.write('{"tone_1k": 0.6}')
        daemon.wait_for_log("thresholds reloaded")
        assert daemon.stop() == 0
    finally:
        daemon.process.kill()  # a daemon left waiting on the FIFO would not stop on SIGTERM


def test_sigterm_stops_cleanly_with_a_final_status(model):
    daemon = Daemon([model, "--source", "-", "--rate", "16000", "--status-every", "0.2"], stdin=subprocess.PIPE)
    daemon.wait_for(lambda r: r["type"] == "status")
    assert daemon.stop() == 0
    assert daemon.seen[-1]["type"] == "status" and "stdout" in daemon.seen[-1]["sinks"]


@pytest.mark.parametrize("args, says", [
    (["--hop", "-1"], "argument --hop: '-1' is not a positive number of seconds"),
    (["--median", "-3"], "argument --median: '-3' is not a whole number of at least 1"),
    (["--threshold", "tone_1k=nan"], "argument --threshold: 'nan' is not a probability from 0 to 1"),
    (["--metrics-port", "99999"], "argument --metrics-port: '99999' is not a port"),
    (["--webhook", "file:///etc/passwd"], "is not an http:// or https:// URL with a host"),
    (["--webhook", "example.com/hook"], "is not an http:// or https:// URL with a host"),
    (["--ui", "localhost"], "--ui 'localhost' is not HOST:PORT"),
])
def test_out_of_range_arguments_are_refused_in_one_sentence(model, args, says):
    run = subprocess.run(LISTEN + [str(model), "--source", "-"] + args, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode in (1, 2) and says in run.stderr and "Traceback" not in run.stderr


def test_a_nan_thresholds_file_is_refused(tmp_path, model):
    bad = tmp_path / "t.json"
    bad.write_text('{"tone_1k": NaN}')
    run = subprocess.run(LISTEN + [str(model), "--source", "-", "--thresholds-file", str(bad)], capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 1 and "probability from 0 to 1" in run.stderr and "Traceback" not in run.stderr


def test_busy_port_and_closed_stdout_are_one_sentence(tmp_path, model):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(LISTEN + [str(model), "--source", "-", "--metrics-port", str(port)], capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 1 and f"cannot serve on 127.0.0.1:{port}" in run.stderr and "Traceback" not in run.stderr
    wav = _wav(tmp_path / "long.wav", 20.0, [(1.0, 2.0, 1000.0)])
    process = subprocess.Popen(LISTEN + [str(model), "--source", str(wav), "--status-every", "0.1"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdout.readline()  # the reader takes one line and goes away, as `| head -1` does
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(60) == 1
    assert "stdout was closed" in stderr and "Traceback" not in stderr and "Exception ignored" not in stderr
    run = subprocess.run(" ".join(LISTEN + [str(model), "--source", str(wav), ">&-"]), shell=True, capture_output=True,
                         text=True, timeout=60)  # started with stdout closed
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "stdout is closed; pass --sink file:PATH" in run.stderr


def test_nan_audio_is_replaced_by_silence_counted_and_never_printed(tmp_path, model):
    wave = tone_track(4.0, [(2.0, 3.0, 1000.0)])
    wave[8000:12800] = float("nan")  # 0.5 s to 0.8 s
    wave[100] = float("inf")
    sf.write(tmp_path / "nan.wav", wave, SAMPLE_RATE, subtype="FLOAT")
    run = subprocess.run(LISTEN + [str(model), "--source", str(tmp_path / "nan.wav"), "--fast"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the JSON output")) for line in run.stdout.splitlines()]
    assert [r["label"] for r in records if r["type"] == "event"] == ["tone_1k"]
    assert records[-1]["nonfinite_samples"] == 4801
    assert "replaced by silence" in run.stderr


def test_list_devices_and_a_bad_device_name_show_the_real_inputs(model, pulse):
    run = subprocess.run(LISTEN + ["--list-devices"], capture_output=True, text=True, timeout=60, env=pulse.env)
    assert run.returncode == 0, run.stderr
    listed = run.stdout.splitlines()
    assert any(" pulse (" in line for line in listed) and any(line.startswith("*") for line in listed)
    run = subprocess.run(LISTEN + [str(model), "--source", "mic:no-such-device"], capture_output=True, text=True, timeout=60, env=pulse.env)
    assert run.returncode == 1 and "no input device no-such-device" in run.stderr
    assert ": pulse" in run.stderr and "--list-devices" in run.stderr and "Traceback" not in run.stderr
