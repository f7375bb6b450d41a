"""`earmark listen MODEL --source mic[:DEVICE]|FILE|-`: live scene and event detection, day and night."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an .onnx file written by `earmark export` (or a TensorRT .engine with --backend tensorrt)")
    parser.add_argument("--source", default="mic", help="mic, mic:DEVICE (name or index), a file, or - for s16le PCM on stdin")
    parser.add_argument("--rate", type=int, default=16000, help="sample rate of PCM on stdin")
    parser.add_argument("--fast", action="store_true", help="read a file as fast as possible instead of in real time")
    parser.add_argument("--window", type=float, help="window in seconds (must match the export)")
    parser.add_argument("--hop", type=float, help="seconds between model runs (default: from the model)")
    parser.add_argument("--threshold", action="append", default=[], metavar="LABEL=P", help="per-label on threshold (repeatable)")
    parser.add_argument("--thresholds-file", help="JSON {label: p}; re-read on SIGHUP")
    parser.add_argument("--off-ratio", type=float, default=0.7, help="hysteresis: off threshold = ratio x on threshold")
    parser.add_argument("--median", type=int, default=1, help="class-wise median filter length in segments")
    parser.add_argument("--min-duration", type=float, default=0.0, help="shortest event in seconds")
    parser.add_argument("--max-gap", type=float, default=0.0, help="merge events of a label separated by at most this gap")
    parser.add_argument("--hold", type=float, default=2.0, help="seconds a new scene must lead before it is reported")
    parser.add_argument("--top-k", type=int, default=3, help="labels in the status record's 'hears' view")
    parser.add_argument("--sink", default="stdout", help="stdout, or file:PATH for a rotating JSON-lines file")
    parser.add_argument("--mqtt", metavar="HOST[:PORT]", help="publish states and events to this MQTT broker")
    parser.add_argument("--mqtt-prefix", default="earmark")
    parser.add_argument("--mqtt-user")
    parser.add_argument("--mqtt-password")
    parser.add_argument("--mqtt-tls", action="store_true")
    parser.add_argument("--ha-discovery", action="store_true", help="announce binary sensors to Home Assistant")
    parser.add_argument("--webhook", metavar="URL", help="POST each event as JSON")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics and /healthz on this port")
    parser.add_argument("--metrics-host", default="127.0.0.1")
    parser.add_argument("--status-every", type=float, default=10.0, help="seconds between status records")
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tensorrt"])
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for ONNX Runtime and numpy's BLAS (default 1: one stream per core, no idle spinning)")


def _thresholds(pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        label, _, value = pair.partition("=")
        try:
            out[label] = float(value)
        except ValueError:
            raise ValueError(f"--threshold {pair!r} is not LABEL=P; write e.g. --threshold siren=0.6.") from None
    return out


def run(args: argparse.Namespace) -> int:
    from earmark.runtime.daemon import Listener, log
    from earmark.runtime.model import read_thresholds
    from earmark.runtime.postprocess import EventSettings
    from earmark.runtime.sinks import JsonLinesSink, Metrics, MetricsServer, MqttSink, RotatingFileSink, WebhookSink
    from earmark.runtime.sources import open_source
    from earmark.runtime.stream import StreamingClassifier

    classifier = StreamingClassifier(args.model, args.backend, args.hop, args.window, args.threads)
    meta = classifier.metadata
    thresholds = {**meta.thresholds, **(read_thresholds(args.thresholds_file) if args.thresholds_file else {}), **_thresholds(args.threshold)}
    unknown = sorted(set(thresholds) - set(meta.labels))
    if unknown:
        raise ValueError(f"thresholds for unknown labels {unknown}; the model's labels are {list(meta.labels)}.")
    settings = EventSettings(thresholds, meta.default_threshold, args.off_ratio, args.median, args.min_duration, args.max_gap)
    source = open_source(args.source, args.rate, args.fast, log=log)
    sinks = [RotatingFileSink(args.sink[5:]) if args.sink.startswith("file:") else JsonLinesSink()]
    if args.mqtt:
        host, _, port = args.mqtt.partition(":")
        sinks.append(MqttSink(host, int(port or 1883), args.mqtt_prefix, meta.labels, args.mqtt_user, args.mqtt_password,
                              args.mqtt_tls, args.ha_discovery, log=log))
    if args.webhook:
        sinks.append(WebhookSink(args.webhook, log=log))
    metrics = Metrics()
    server = MetricsServer(metrics, args.metrics_port, args.metrics_host) if args.metrics_port is not None else None
    if server:
        log(f"metrics on http://{args.metrics_host}:{server.port}/metrics")
    listener = Listener(classifier, source, sinks, settings, args.hold, args.status_every, args.thresholds_file, metrics, args.top_k)
    listener.install_signals()
    log(f"listening to {args.source} ({source.sample_rate} Hz) for {len(meta.labels)} labels, window {meta.window_seconds} s, "
        f"hop {classifier.plan.hop_seconds:.3f} s")
    try:
        code = listener.run()
    finally:
        if server:
            server.close()
    if args.source == "-":
        log("stdin ended; stopping")
    return code
