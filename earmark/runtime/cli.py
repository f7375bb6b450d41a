"""`earmark listen MODEL --source mic[:DEVICE]|FILE|-`: live scene and event detection, day and night."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path

from earmark.audio.options import AT_LEAST_ONE, GAP_SECONDS, PORT, PROBABILITY, RATIO, SECONDS


def threshold_pair(text: str) -> tuple[str, float]:
    """``LABEL=P`` with P a probability."""
    label, sep, value = text.rpartition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"{text!r} is not LABEL=P; write e.g. --threshold siren=0.6")
    return label, PROBABILITY(value)


def add_event_arguments(parser: argparse.ArgumentParser) -> None:
    """How scores become events: the options `listen` and `eval` share, so both decide events alike."""
    parser.add_argument("--threshold", type=threshold_pair, action="append", default=[], metavar="LABEL=P",
                        help="per-label on threshold (repeatable); wins over the thresholds file and the model's calibrated ones")
    parser.add_argument("--thresholds-file", help="JSON {label: p} over the model's calibrated thresholds; `listen` re-reads it on SIGHUP")
    parser.add_argument("--off-ratio", type=RATIO, default=0.7, help="hysteresis: off threshold = ratio x on threshold")
    tuned = " (default: what the model's thresholds were tuned with, else %s)"
    parser.add_argument("--median", type=AT_LEAST_ONE, help="class-wise median filter length in segments" + tuned % 1)
    parser.add_argument("--min-duration", type=GAP_SECONDS, help="shortest event in seconds" + tuned % 0)
    parser.add_argument("--max-gap", type=GAP_SECONDS, help="merge events of a label separated by at most this gap" + tuned % 0)


def event_settings(args: argparse.Namespace, meta):
    """(EventSettings, ThresholdSources) from the options of ``add_event_arguments`` and the model's metadata."""
    from earmark.runtime.daemon import ThresholdSources
    from earmark.runtime.postprocess import EventSettings

    sources = ThresholdSources(meta.labels, meta.thresholds, args.thresholds_file, dict(args.threshold))
    chosen = lambda name, default: getattr(args, name) if getattr(args, name) is not None else meta.postprocess.get(name, default)
    settings = EventSettings(sources.resolve(), meta.default_threshold, args.off_ratio, int(chosen("median", 1)),
                             chosen("min_duration", 0.0), chosen("max_gap", 0.0))
    return settings, sources


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="an .onnx file written by `earmark export` (or a TensorRT .engine with --backend tensorrt)")
    parser.add_argument("--list-devices", action="store_true", help="list the microphones (input devices) and exit")
    parser.add_argument("--source", default="mic", help="mic, mic:DEVICE (name or index), a file, or - for s16le PCM on stdin")
    parser.add_argument("--rate", type=AT_LEAST_ONE, default=16000, help="sample rate of PCM on stdin")
    parser.add_argument("--fast", action="store_true", help="read a file as fast as possible instead of in real time")
    parser.add_argument("--window", type=SECONDS, help="window in seconds (must match the export)")
    parser.add_argument("--hop", type=SECONDS, help="seconds between model runs (default: from the model)")
    add_event_arguments(parser)
    parser.add_argument("--hold", type=GAP_SECONDS, default=2.0, help="seconds a new scene must lead before it is reported")
    parser.add_argument("--top-k", type=AT_LEAST_ONE, default=3, help="labels in the status record's 'hears' view")
    parser.add_argument("--sink", default="stdout", help="stdout, or file:PATH for a rotating JSON-lines file")
    mqtt = parser.add_argument_group("MQTT (pip install 'earmark[mqtt]')")
    mqtt.add_argument("--mqtt", metavar="HOST[:PORT]", help="publish states and events to this broker (port 1883, 8883 with TLS)")
    mqtt.add_argument("--mqtt-prefix", default="earmark", help="topic prefix")
    mqtt.add_argument("--mqtt-client-id", help="MQTT client id (default: PREFIX-HOSTNAME-PID)")
    mqtt.add_argument("--mqtt-user", help="broker user name")
    mqtt.add_argument("--mqtt-password-file", help="a file whose first line is the password (or set EARMARK_MQTT_PASSWORD)")
    mqtt.add_argument("--mqtt-password", help="discouraged: visible to every user in `ps`")
    mqtt.add_argument("--mqtt-tls", action="store_true", help="TLS with the system's certificate authorities")
    mqtt.add_argument("--mqtt-tls-ca", metavar="PEM", help="TLS, verifying the broker against this CA file")
    mqtt.add_argument("--mqtt-cert", metavar="PEM", help="TLS client certificate (with --mqtt-key)")
    mqtt.add_argument("--mqtt-key", metavar="PEM", help="TLS client key")
    mqtt.add_argument("--ha-discovery", action="store_true", help="announce binary sensors to Home Assistant")
    parser.add_argument("--webhook", metavar="URL", help="POST each event as JSON to this http(s) URL")
    parser.add_argument("--metrics-port", type=PORT, help="serve Prometheus /metrics and /healthz on this port")
    parser.add_argument("--metrics-host", default="127.0.0.1", help="address the metrics server binds")
    parser.add_argument("--ui", metavar="HOST:PORT", help="serve a live page (spectrogram, scores, events, status) here")
    parser.add_argument("--status-every", type=SECONDS, default=10.0, help="seconds between status records")
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tensorrt"], help="inference engine")
    parser.add_argument("--threads", type=AT_LEAST_ONE, default=1,
                        help="CPU threads for ONNX Runtime and numpy's BLAS (default 1: one stream per core, no idle spinning)")
    enrol = parser.add_argument_group("enrolment material for `earmark adapt`")
    enrol.add_argument("--record-background", type=SECONDS, metavar="SECONDS",
                       help="record the site (nothing should happen) for this long into --record-to, then stop")
    enrol.add_argument("--record-to", default="site.wav", help="where --record-background writes")
    enrol.add_argument("--save-clips", metavar="DIR", help="save each detection with a second either side as DIR/LABEL/*.wav; "
                       "move misnamed ones to the right folder and pass DIR to `earmark adapt`")
    parser.add_argument("--timeline", metavar="PNG", help="with --source FILE: draw spectrogram, scores, thresholds and events into PNG")
    parser.add_argument("--selections", metavar="TXT|CSV", help="with --source FILE: write the events as a Raven selection table "
                        "(tab-separated), or onset,offset,label,score rows when the name ends in .csv")


def _remember_sighup() -> list[int]:
    """Until the listener takes over its signals, a SIGHUP (systemd's ExecReload) is noted, not fatal; the list fills."""
    seen: list[int] = []
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda number, _frame: seen.append(number))
    return seen


def _mqtt_sink(args: argparse.Namespace, meta, log):
    from earmark.runtime.mqtt import MqttSink, tls_context

    if args.mqtt_key and not args.mqtt_cert:
        raise ValueError("--mqtt-key needs --mqtt-cert (the client certificate it belongs to).")
    tls = args.mqtt_tls or args.mqtt_tls_ca or args.mqtt_cert
    host, _, port = args.mqtt.partition(":")
    if port and not port.isdigit() or not host:
        raise ValueError(f"--mqtt {args.mqtt!r} is not HOST[:PORT]; write e.g. --mqtt localhost:1883.")
    password = os.environ.get("EARMARK_MQTT_PASSWORD")
    if args.mqtt_password_file:
        try:
            password = next(iter(Path(args.mqtt_password_file).read_text(encoding="utf-8").splitlines()), "")
        except OSError as err:
            raise ValueError(f"--mqtt-password-file {args.mqtt_password_file}: cannot read it ({err.strerror}).") from None
    elif args.mqtt_password:
        log("--mqtt-password is visible to every user in `ps`; prefer --mqtt-password-file or EARMARK_MQTT_PASSWORD", logging.WARNING)
        password = args.mqtt_password
    return MqttSink(host, int(port or (8883 if tls else 1883)), args.mqtt_prefix, meta.labels, username=args.mqtt_user,
                    password=password, tls=tls_context(args.mqtt_tls_ca, args.mqtt_cert, args.mqtt_key) if tls else None,
                    client_id=args.mqtt_client_id, ha_discovery=args.ha_discovery, model_name=meta.model_name)


def run(args: argparse.Namespace) -> int:
    early_reloads = _remember_sighup()
    if args.list_devices:
        from earmark.runtime.sources import describe_inputs

        print(describe_inputs())
        return 0
    if not args.model:
        raise ValueError("give the MODEL to listen with (an .onnx file from `earmark export`), or --list-devices to see the microphones.")
    from earmark.runtime.daemon import Listener, log
    from earmark.runtime.metrics import Metrics, serve_metrics
    from earmark.runtime.sinks import JsonLinesSink, RotatingFileSink
    from earmark.runtime.sources import open_source
    from earmark.runtime.stream import StreamingClassifier
    from earmark.runtime.web import parse_address
    from earmark.runtime.webhook import WebhookSink, check_url

    if args.sink != "stdout" and not args.sink.startswith("file:"):
        raise ValueError(f"--sink {args.sink!r} is neither stdout nor file:PATH; write e.g. --sink file:/var/log/earmark/events.jsonl.")
    if args.timeline:
        import matplotlib  # noqa: F401 - missing, it is named now, not after the whole recording was decoded
    ui_address = parse_address(args.ui, "--ui") if args.ui else None
    webhook = check_url(args.webhook) if args.webhook else None
    classifier = StreamingClassifier(args.model, args.backend, args.hop, args.window, args.threads)
    meta = classifier.metadata
    settings, sources = event_settings(args, meta)
    if (args.timeline or args.selections) and (args.source == "-" or args.source.split(":")[0] == "mic"):
        raise ValueError("--timeline and --selections describe a whole recording; pass --source FILE to use them.")
    source = open_source(args.source, args.rate, args.fast, log=log)
    metrics = Metrics()
    services = []
    if args.metrics_port is not None:
        services.append(serve_metrics(metrics, args.metrics_host, args.metrics_port))
        log(f"metrics on {services[-1].url}/metrics")
    sinks = [RotatingFileSink(args.sink[5:]) if args.sink.startswith("file:") else JsonLinesSink()]
    if args.mqtt:
        sinks.append(_mqtt_sink(args, meta, log))
    if webhook:
        sinks.append(WebhookSink(webhook))
    listener = Listener(classifier, source, sinks, settings, args.hold, args.status_every, sources, metrics, args.top_k)
    timeline = None
    if args.timeline or args.selections:
        from earmark.runtime.timeline import Timeline

        timeline = Timeline(meta.labels, tuple(settings.on(label) for label in meta.labels))
        listener.attach(timeline, timeline.add)
    if ui_address:
        from earmark.runtime.live import LivePage

        page = LivePage(*ui_address, listener, source=args.source)
        listener.attach(page, page.window)
        services.append(page.service)
        log(f"live page on {page.service.url}/")
    if args.record_background:
        from earmark.runtime.recording import SiteRecorder

        recorder = SiteRecorder(args.record_to, args.record_background, source.sample_rate, listener.stop)
        listener.taps.append(recorder.tap)
        log(f"recording {args.record_background:g} s of the site into {args.record_to}")
    if args.save_clips:
        from earmark.runtime.recording import ClipSaver

        saver = ClipSaver(args.save_clips, source.sample_rate)
        listener.attach(saver)
        listener.taps.append(saver.tap)
    listener.install_signals()
    if early_reloads:
        log("SIGHUP during start-up: re-reading the thresholds now")
        listener.request_reload()
    log(f"listening to {args.source} ({source.sample_rate} Hz) for {len(meta.labels)} labels"
        f"{f' and {len(meta.scene_labels)} scenes' if meta.scene_labels else ''}, window {meta.window_seconds} s, "
        f"hop {classifier.plan.hop_seconds:.3f} s")
    try:
        code = listener.run()
    finally:
        for service in services:
            service.close()
    if args.source == "-" and code == 0:
        log("stdin ended; stopping")
    if timeline is not None:
        _write_timeline(args, timeline, meta.frontend, log)
    return code


def _write_timeline(args: argparse.Namespace, timeline, frontend, log) -> None:
    from earmark.runtime.timeline import plot_timeline, write_selections

    if args.selections:
        log(f"{len(timeline.events)} events in {write_selections(timeline.events, args.selections, frontend.sample_rate / 2)}")
    if args.timeline:
        log(f"timeline drawn in {plot_timeline(args.source, timeline, frontend, args.timeline)}")
