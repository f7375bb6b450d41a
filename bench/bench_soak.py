"""Soak: `earmark listen` on stdin audio with MQTT and webhook sinks while the broker and the webhook server go down
and come back on a schedule; reports events produced vs delivered per sink and the daemon's resident memory.

    python bench/bench_soak.py [--minutes 60] [--period 60] [--outage 12] [--model M.onnx]

Every ``period`` seconds the broker is stopped at 1/3 of the period and the webhook server at 2/3, each for ``outage``
seconds. Audio: synthetic 1 kHz / 3 kHz tones over noise (an event every ~2 s), fed at real time; the model is the
tests' tone detector (needs torch) unless --model is given. Uses the tests' real services (tests/runtime/services.py):
mosquitto with persistence and a subscriber with a persistent session (it misses nothing while the broker is away),
a ThreadingHTTPServer receiver that redirects each record's first POST (301, 302, 307, 308 in turn, as a reverse
proxy's http -> https does). Delivery holds when, per sink, produced - delivered == the sink's counted drops (and
the webhook never followed a redirect with a bodiless GET).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from runtime.models import tone_track  # noqa: E402
from runtime.services import Daemon, Mosquitto, Subscriber, WebhookServer  # noqa: E402

RATE = 16000
REDIRECTS = (301, 302, 307, 308)


def redirect_first(record: dict, attempt: int) -> int:
    """The receiver redirects each record's first POST (as a reverse proxy's http -> https does), then accepts it."""
    return REDIRECTS[int(record["onset"] * 10) % len(REDIRECTS)] if attempt == 1 else 204


def soundtrack(seconds: float = 60.0):
    """A minute of noise with a tone event every 2 s, 1 kHz and 3 kHz alternating (looped by the feeder)."""
    tones = [(t + 0.5, t + 1.3, 1000.0 if i % 2 == 0 else 3000.0) for i, t in enumerate(range(0, int(seconds), 2))]
    return tone_track(seconds, tones, noise=0.02)


def delivered_line(daemon: Daemon) -> dict[str, dict[str, int]]:
    """The daemon's exit line `delivered: stdout 12 sent, 0 retried, 0 dropped; mqtt ...` as numbers."""
    line = next(l for l in daemon.stderr if "delivered:" in l).split("delivered:", 1)[1]
    out = {}
    for part in line.strip().split("; "):
        name, counts = part.split(" ", 1)
        out[name] = {kind: int(n) for n, kind in (c.split() for c in counts.split(", "))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--period", type=float, default=60.0, help="seconds between outages of each service")
    parser.add_argument("--outage", type=float, default=12.0, help="seconds each service stays down")
    parser.add_argument("--model", help="an exported .onnx (default: the tests' tone detector)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="earmark-soak-"))
    if args.model:
        model = args.model
    else:
        from runtime.models import export_detector

        model = export_detector(folder / "tones.onnx", frame=True, hop=0.1)
    broker = Mosquitto(folder, persistent=True).start()
    watcher = Subscriber(broker.port, "earmark/events", client_id="soak-watcher")
    hook = WebhookServer(redirect_first).start()
    daemon = Daemon([model, "--source", "-", "--rate", str(RATE), "--status-every", "5", "--mqtt", f"127.0.0.1:{broker.port}",
                     "--webhook", hook.url], stdin=subprocess.PIPE)
    process = psutil.Process(daemon.process.pid)
    audio, block = soundtrack(), RATE // 10
    total, started, fed, rss_start = args.minutes * 60, time.monotonic(), 0, None
    outages = {"broker": 0, "webhook": 0}
    down = {"broker": False, "webhook": False}
    while fed < total * RATE:
        now = time.monotonic() - started
        if rss_start is None and now >= min(10.0, total / 4):
            rss_start = process.memory_info().rss
        phase = now % args.period
        for name, service, offset in (("broker", broker, args.period / 3), ("webhook", hook, 2 * args.period / 3)):
            should_be_down = offset <= phase < offset + args.outage
            if should_be_down and not down[name]:
                service.stop()
                outages[name] += 1
            elif not should_be_down and down[name]:
                service.start()
            down[name] = should_be_down
        start = fed % audio.size
        daemon.feed(audio[start:start + block])
        fed += block
        time.sleep(max(0.0, fed / RATE - (time.monotonic() - started)))  # real-time pace
    rss_end = process.memory_info().rss
    for name, service in (("broker", broker), ("webhook", hook)):
        if down[name]:
            service.start()
    daemon.process.stdin.close()
    daemon.process.wait(120)
    time.sleep(2)  # the watcher's last messages
    produced = [r for r in daemon.seen if r["type"] == "event"]
    counts = delivered_line(daemon)
    key = lambda r: (r["label"], r["onset"])  # noqa: E731 - QoS 1 may deliver twice: count distinct events
    mqtt_events = [json.loads(p) for p in watcher.payloads("earmark/events")]
    figures = {
        "minutes": args.minutes, "period_s": args.period, "outage_s": args.outage, "outages": outages,
        "events_produced": len(produced),
        "mqtt": {"events_delivered": len({key(r) for r in mqtt_events}), "duplicates": len(mqtt_events) - len({key(r) for r in mqtt_events}),
                 **counts.get("mqtt", {})},
        "webhook": {"events_delivered": len({key(r) for r in hook.received}), "duplicates": len(hook.received) - len({key(r) for r in hook.received}),
                    "bodiless_gets": hook.gets, **counts.get("webhook", {})},
        "rss_mb_start": round(rss_start / 2**20, 1), "rss_mb_end": round(rss_end / 2**20, 1),
    }
    for sink in ("mqtt", "webhook"):
        f = figures[sink]
        f["holds"] = figures["events_produced"] - f["events_delivered"] == f.get("dropped", 0) and not f.get("bodiless_gets")
    watcher.close()
    hook.stop()
    broker.stop()
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
