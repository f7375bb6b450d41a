"""Detection latency of the decision path alone: the tests' ideal tone detectors, windowed and causal, through
`earmark eval` on one minute of 24 tones over noise (reference onset -> ON, stream time, median / p90).

    python bench/bench_tone_latency.py [--out /tmp/tone-latency]
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from runtime.models import SAMPLE_RATE, export_causal_detector, export_detector, tone_track  # noqa: E402

from earmark.cli import main as earmark  # noqa: E402

TONES = [(1.0 + 2.37 * i, 2.0 + 2.37 * i, 3000.0 if i % 2 == 0 else 1000.0) for i in range(24)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tone-latency")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    sf.write(out / "tones.wav", tone_track(60.0, TONES), SAMPLE_RATE)
    with open(out / "strong.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["filename", "onset", "offset", "event_label"])
        writer.writerows([["tones.wav", on, off, "tone_1k" if freq == 1000.0 else "tone_3k"] for on, off, freq in TONES])
    models = {"windowed frame model, 1-s windows every 0.5 s": export_detector(out / "windowed.onnx", frame=True, window=1.0, hop=0.5),
              "causal stateful model, 40-ms hops": export_causal_detector(out / "causal.onnx")}
    rows = []
    for name, model in models.items():
        earmark(["-q", "eval", str(model), str(out / "strong.tsv"), "--out", str(out / model.stem), "--timelines", "0"])
        r = json.loads((out / model.stem / "results.json").read_text())
        lat = r["latency"]
        rows.append(f"{name:48s} F1 onset {r['events']['0.2']['onset']['f1']:6.1%}   latency median {lat['median'] * 1000:4.0f} ms, "
                    f"p90 {lat['p90'] * 1000:4.0f} ms ({lat['hits']} hits)")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
