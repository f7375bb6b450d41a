"""Delivery by `earmark listen`'s sinks against real services: mosquitto (outages, two daemons, TLS with client
certificates, passwords, awkward labels) and a real HTTP server that answers 400, 503 and bytes that are not HTTP."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from earmark.runtime.mqtt import MqttSink, device_id, label_slugs, topic_slug
from earmark.runtime.webhook import WebhookSink

from .models import SAMPLE_RATE, export_detector, tone_track
from .services import LISTEN, Daemon, Mosquitto, Subscriber, WebhookServer, free_port, mosquitto_binary


@pytest.fixture
def model(tmp_path):
    return export_detector(tmp_path / "tones.onnx", frame=True, hop=0.1)


def _stdin_daemon(model, *args):
    return Daemon([model, "--source", "-", "--rate", "16000", "--status-every", "0.2", *args], stdin=subprocess.PIPE)


def _delivered(daemon) -> str:
    return next(line for line in daemon.stderr if "delivered:" in line)


def test_runtime_sinks_import_without_torch():
    code = "import sys; sys.modules['torch'] = None; import earmark.runtime.mqtt, earmark.runtime.webhook, earmark.runtime.live, earmark.runtime.metrics"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_label_slugs_are_topic_safe_and_unique():
    assert label_slugs(("Dog bark", "dog/bark", "#", "a+b")) == {"Dog bark": "dog_bark", "dog/bark": "dog_bark_2", "#": "label", "a+b": "a_b"}


def test_two_daemons_on_one_broker_keep_their_sessions(model, broker):
    watcher = Subscriber(broker.port, "+/availability")
    kitchen = _stdin_daemon(model, "--mqtt", f"127.0.0.1:{broker.port}", "--mqtt-prefix", "kitchen")
    hall = _stdin_daemon(model, "--mqtt", f"127.0.0.1:{broker.port}", "--mqtt-prefix", "hall")
    try:
        kitchen.wait_for_log(f"as {device_id('kitchen')}-{kitchen.process.pid}")
        hall.wait_for_log(f"as {device_id('hall')}-{hall.process.pid}")
        for daemon in (kitchen, hall):  # a few seconds of audio each: a session taken over would flap meanwhile
            daemon.feed(tone_track(3.0, [(1.0, 2.0, 1000.0)]))
            daemon.wait_for(lambda r: r["type"] == "event")
    finally:
        assert kitchen.stop() == 0 and hall.stop() == 0
    watcher.wait_for(lambda w: len(w.payloads("hall/availability")) == 2)
    watcher.close()
    assert watcher.payloads("kitchen/availability") == ["online", "offline"]
    assert watcher.payloads("hall/availability") == ["online", "offline"]
    assert not any("reconnected" in line for line in kitchen.stderr + hall.stderr)


def test_two_daemons_with_one_prefix_on_one_host_keep_their_connections(model, broker):
    first = _stdin_daemon(model, "--mqtt", f"127.0.0.1:{broker.port}")
    second = _stdin_daemon(model, "--mqtt", f"127.0.0.1:{broker.port}")
    try:
        for daemon in (first, second):
            daemon.wait_for_log("MQTT connected")
        for daemon in (first, second):  # a connection taken over would be lost and come back meanwhile
            daemon.feed(tone_track(3.0, [(1.0, 2.0, 1000.0)]))
            daemon.wait_for(lambda r: r["type"] == "event")
    finally:
        assert first.stop() == 0 and second.stop() == 0
    assert not any("connection lost" in line or "reconnected" in line for line in first.stderr + second.stderr)
    assert all("mqtt 5 sent, 0 retried, 0 dropped" in _delivered(daemon) for daemon in (first, second))


def test_broker_outage_replays_states_retained_and_delivers_waiting_events(tmp_path, model):
    if not mosquitto_binary():
        pytest.skip("mosquitto is not installed (make test installs it)")
    broker = Mosquitto(tmp_path, persistent=True).start()
    watcher = Subscriber(broker.port, "earmark/#", client_id="watcher")  # a persistent session: the broker keeps its messages
    daemon = _stdin_daemon(model, "--mqtt", f"127.0.0.1:{broker.port}")
    try:
        daemon.wait_for_log("MQTT connected")
        watcher.wait_for(lambda w: w.payloads("earmark/tone_3k/state") == ["OFF"])
        broker.stop()
        daemon.wait_for_log("MQTT connection to")
        # during the outage: a whole 1 kHz event, and a 3 kHz tone still sounding when the broker returns
        daemon.feed(tone_track(3.0, [(0.5, 1.5, 1000.0), (2.0, 3.0, 3000.0)]))
        daemon.wait_for(lambda r: r["type"] == "event" and r["label"] == "tone_1k")
        daemon.wait_for(lambda r: r["type"] == "status" and r["audio_seconds"] >= 2.95)
        broker.start()
        daemon.wait_for_log("MQTT reconnected")
        watcher.wait_for(lambda w: [json.loads(p)["label"] for p in w.payloads("earmark/events")] == ["tone_1k"])
        late = Subscriber(broker.port, "earmark/#")  # arrives after the outage: sees only retained messages
        late.wait_for(lambda w: ("earmark/tone_3k/state", "ON", True) in w.messages)
        late.wait_for(lambda w: ("earmark/tone_1k/state", "OFF", True) in w.messages)
        status = daemon.wait_for(lambda r: r["type"] == "status" and r["sinks"]["mqtt"]["sent"] >= 5)
        assert status["sinks"]["mqtt"]["dropped"] == 0 and status["sinks"]["mqtt"]["retried"] >= 1
        late.close()
    finally:
        assert daemon.stop() == 0
        watcher.close()
        broker.stop()
    assert "0 dropped" in _delivered(daemon).split("mqtt")[1]


def test_awkward_labels_get_topic_slugs_and_discovery_has_a_device(tmp_path, broker):
    model = export_detector(tmp_path / "odd.onnx", frame=True, hop=0.1, labels=("dog #1", "a+b/c d"))
    watcher = Subscriber(broker.port)
    wav = tmp_path / "a.wav"
    sf.write(wav, tone_track(4.0, [(1.0, 2.0, 1000.0)]), SAMPLE_RATE)
    run = subprocess.run(LISTEN + [str(model), "--source", str(wav), "--fast", "--mqtt", f"127.0.0.1:{broker.port}", "--ha-discovery"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    watcher.wait_for(lambda w: "OFF" in w.payloads("earmark/a_b_c_d/state") and len(w.payloads("earmark/dog_1/state")) == 3)
    watcher.close()
    assert watcher.payloads("earmark/dog_1/state") == ["OFF", "ON", "OFF"]
    assert [json.loads(p)["label"] for p in watcher.payloads("earmark/events")] == ["dog #1"]
    config = json.loads(watcher.payloads(f"homeassistant/binary_sensor/{topic_slug(device_id('earmark'))}/a_b_c_d/config")[0])
    assert config["name"] == "a+b/c d" and config["state_topic"] == "earmark/a_b_c_d/state"
    assert config["device"]["name"] == "earmark earmark" and config["device"]["identifiers"] == [device_id("earmark")]


def _openssl(*args, cwd):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_tls_with_a_ca_file_client_certificate_and_password_file(tmp_path, model):
    if not mosquitto_binary():
        pytest.skip("mosquitto is not installed (make test installs it)")
    _openssl("-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=earmark test CA", cwd=tmp_path)
    _openssl("-keyout", "server.key", "-out", "server.pem", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-CA", "ca.pem", "-CAkey", "ca.key", cwd=tmp_path)
    _openssl("-keyout", "client.key", "-out", "client.pem", "-subj", "/CN=earmark", "-CA", "ca.pem", "-CAkey", "ca.key", cwd=tmp_path)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwords"), "earmark", "s3cret"], check=True, capture_output=True)
    (tmp_path / "password").write_text("s3cret\n")
    broker = Mosquitto(tmp_path, extra=f"allow_anonymous false\npassword_file {tmp_path}/passwords\ncafile {tmp_path}/ca.pem\n"
                                       f"certfile {tmp_path}/server.pem\nkeyfile {tmp_path}/server.key\nrequire_certificate true\n").start()
    address = f"127.0.0.1:{broker.port}"
    certs = ["--mqtt-tls-ca", tmp_path / "ca.pem", "--mqtt-cert", tmp_path / "client.pem", "--mqtt-key", tmp_path / "client.key"]
    try:
        good = _stdin_daemon(model, "--mqtt", address, "--mqtt-user", "earmark", "--mqtt-password-file", tmp_path / "password", *certs)
        good.wait_for_log("MQTT connected")
        good.feed(tone_track(3.0, [(1.0, 2.0, 1000.0)]))
        good.process.stdin.close()
        assert good.process.wait(30) == 0
        assert "mqtt 5 sent, 0 retried, 0 dropped" in _delivered(good)  # OFF, OFF, ON, OFF and the event, acknowledged
        wrong = Daemon([model, "--source", "-", "--mqtt", address, "--mqtt-user", "earmark", *certs], stdin=subprocess.PIPE,
                       env={**os.environ, "EARMARK_MQTT_PASSWORD": "wrong"})
        wrong.wait_for_log("refused the connection")
        wrong.stop()
        untrusted = _stdin_daemon(model, "--mqtt", address, "--mqtt-tls")  # the system CAs do not know the test CA
        untrusted.wait_for_log("certificate verify failed")
        untrusted.stop()
    finally:
        broker.stop()


def test_unreachable_broker_is_logged_once_and_undelivered_messages_counted_at_exit(model):
    daemon = _stdin_daemon(model, "--mqtt", f"127.0.0.1:{free_port()}")
    daemon.wait_for_log("unreachable (")
    daemon.feed(tone_track(3.0, [(1.0, 2.0, 1000.0)]))
    daemon.wait_for(lambda r: r["type"] == "event")
    daemon.process.stdin.close()
    assert daemon.process.wait(30) == 0
    assert sum("unreachable" in line for line in daemon.stderr) == 1
    assert any("2 messages were never acknowledged" in line for line in daemon.stderr)  # the ON state and the event
    assert "mqtt 0 sent, 0 retried, 2 dropped" in _delivered(daemon)


def test_buffers_beyond_their_size_drop_and_count_every_record():
    event = {"type": "event", "label": "tone_1k", "onset": 1.0, "offset": 2.0, "score": 0.9}
    mqtt = MqttSink("127.0.0.1", free_port(), "earmark", ("tone_1k",), buffer=2, drain_seconds=0.5)  # no broker there
    webhook = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", buffer=2, drain_seconds=0.5, max_backoff=0.5)
    for sink in (mqtt, webhook):
        for _ in range(6):
            sink.emit(event)
        sink.close()
    assert mqtt.delivery.as_dict() == {"sent": 0, "retried": 0, "dropped": 6}  # 4 over the buffer, 2 unacknowledged at exit
    assert webhook.delivery.dropped == 6 and webhook.delivery.sent == 0  # over the queue, in flight, and left at exit


def test_webhook_drops_4xx_retries_5xx_and_garbage_and_keeps_going(tmp_path, model):
    def reply(record, attempt):
        if record["label"] == "tone_1k":
            return 400
        return {1: "garbage", 2: 503}.get(attempt, 204)

    server = WebhookServer(reply).start()
    try:
        wav = tmp_path / "a.wav"
        sf.write(wav, tone_track(5.0, [(1.0, 2.0, 1000.0), (2.5, 3.0, 3000.0), (3.5, 4.5, 1000.0)]), SAMPLE_RATE)
        run = subprocess.run(LISTEN + [str(model), "--source", str(wav), "--fast", "--webhook", server.url],
                             capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert run.returncode == 0, run.stderr
    assert [r["label"] for r in server.received] == ["tone_3k"]
    assert "webhook 1 sent, 2 retried, 2 dropped" in run.stderr
    assert "refused a record (HTTP 400" in run.stderr and "BadStatusLine" in run.stderr and "delivers again" in run.stderr
    assert "Traceback" not in run.stderr


def test_webhook_records_left_at_exit_are_counted_and_logged(tmp_path, model):
    wav = tmp_path / "a.wav"
    sf.write(wav, tone_track(4.0, [(1.0, 2.0, 1000.0), (2.5, 3.0, 3000.0)]), SAMPLE_RATE)
    run = subprocess.run(LISTEN + [str(model), "--source", str(wav), "--fast", "--webhook", f"http://127.0.0.1:{free_port()}/hook"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "undelivered at exit were dropped" in run.stderr and "webhook 0 sent" in run.stderr and "2 dropped" in run.stderr


@pytest.mark.slow
def test_soak_bench_delivers_every_event_or_counts_it(tmp_path):
    if not mosquitto_binary():
        pytest.skip("mosquitto is not installed (make test installs it)")
    bench = Path(__file__).resolve().parents[2] / "bench" / "bench_soak.py"
    run = subprocess.run([sys.executable, str(bench), "--minutes", "0.5", "--period", "15", "--outage", "4", "--json", str(tmp_path / "soak.json")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    figures = json.loads((tmp_path / "soak.json").read_text())
    assert figures["outages"] == {"broker": 2, "webhook": 2} and figures["events_produced"] >= 10
    assert figures["mqtt"]["holds"] and figures["webhook"]["holds"]


def test_webhook_follows_redirects_with_the_record_and_counts_only_what_arrived():
    codes = {"a": 301, "b": 302, "c": 307, "d": 308}
    server = WebhookServer(lambda record, attempt: codes[record["label"]] if attempt == 1 else 204).start()
    loop = WebhookServer(lambda record, attempt: 302).start()  # redirects to itself for ever
    try:
        sink, looping = WebhookSink(server.url), WebhookSink(loop.url)
        for label in codes:
            sink.emit({"type": "event", "label": label})
        looping.emit({"type": "event", "label": "a"})
        sink.close()
        looping.close()
    finally:
        server.stop()
        loop.stop()
    assert [r["label"] for r in server.received] == list(codes) and server.gets == 0  # re-POSTed, never a bodiless GET
    assert sink.delivery.as_dict() == {"sent": 4, "retried": 0, "dropped": 0}
    assert looping.delivery.as_dict() == {"sent": 0, "retried": 0, "dropped": 1} and not loop.received


def test_webhook_record_in_flight_at_exit_is_counted_once():
    server = WebhookServer(lambda record, attempt: "trickle").start()  # answers within each timeout, but takes seconds
    try:
        sink = WebhookSink(server.url, timeout=1.0, drain_seconds=0.2)
        for label in "abc":
            sink.emit({"type": "event", "label": label})
        sink.close()
        assert sink.delivery.as_dict() == {"sent": 0, "retried": 0, "dropped": 3}
        sink._thread.join(10)  # the late reply to the record in flight changes no count
        assert sink.delivery.as_dict() == {"sent": 0, "retried": 0, "dropped": 3}
    finally:
        server.stop()
