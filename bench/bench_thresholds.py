"""Which event-threshold rule carries from validation mixtures to held-out real soundscapes (issue 13).

    python bench/bench_thresholds.py bench-sed/real [bench-sed-s1/real ...]   # folders that bench_sed.py --real trained

For each detector bench_sed trained there -- (b) b/student, (c) c*/student, (d) c*/student-int8 -- the model's
scores over its run's validation soundscapes (rebuilt from config.json, as `earmark distill` and `earmark tune`
tune on them) and over the held-out test soundscapes (test_scapes-N), on the timeline the daemon builds (PyTorch,
window and hop as exported). Each rule picks thresholds on validation; the table gives what they do on the test
set: event F1 (sed_eval counts, onsets within 0.5 s), detections / events, and false alarms per minute of
background-only audio (earmark.evaluation.events.false_alarms, 0.5 s collar). Rules: one threshold per class or
one shared by all, each for the best event F1 or for the most events within 60 false alarms per hour per class.

Threads: torch and BLAS pinned to one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402

from earmark.audio.events import EventSettings  # noqa: E402
from earmark.audio.features_torch import Frontend  # noqa: E402
from earmark.audio.io import load_audio  # noqa: E402
from earmark.audio.manifest import read_manifest  # noqa: E402
from earmark.audio.metadata import default_hop_seconds  # noqa: E402
from earmark.audio.sources import open_data  # noqa: E402
from earmark.distill.run import DistillConfig, event_settings, run_config, validation_soundscapes  # noqa: E402
from earmark.engine import load_model  # noqa: E402
from earmark.evaluation.events import false_alarms  # noqa: E402
from earmark.distill.thresholds import (class_counts, decode, event_f1, pick_thresholds, pooled_counts, threshold_curves,  # noqa: E402
                                         timeline)

import earmark.students  # noqa: E402,F401  (registers the student families with load_model)

RULES = {"per class, F1": {"per_class": True}, "per class, <= 60 FA/h": {"per_class": True, "max_false_alarms": 60.0},
         "shared, F1": {}, "shared, <= 60 FA/h per class": {"max_false_alarms": 60.0}}
COLLAR = 0.5


def heard(model, frontend: Frontend, config: DistillConfig, audio, objective: str = "detect"):
    """The daemon's timeline of one recording."""
    return timeline(model, frontend, audio, config.clip_seconds, default_hop_seconds(config.clip_seconds), objective)


def test_scores(items: list, labels: list[str], settings: EventSettings, thresholds: dict[str, float]) -> tuple[float, int, int, float]:
    """(event F1, detections, events, false alarms per background minute) of these thresholds on the test items."""
    decoded = [decode(t, labels, replace(settings, thresholds=thresholds), d) for t, _, d in items]
    pooled = pooled_counts(list(class_counts([r for _, r, _ in items], decoded, labels, COLLAR).values()))
    alarms = false_alarms({k: r for k, (_, r, _) in enumerate(items)}, dict(enumerate(decoded)), {k: d for k, (*_, d) in enumerate(items)}, COLLAR)
    return event_f1(pooled), int(pooled["Ntp"] + pooled["Nfp"]), int(pooled["Nref"]), alarms["per_minute"]


def bench_folder(folder: Path, test_scapes: int, kd: str) -> list[str]:
    """One table row per (system, rule) for one bench_sed real folder."""
    tests = read_manifest(folder / f"test_scapes-{test_scapes}" / "soundscapes.tsv")
    rows = []
    for system, checkpoint in {"b": folder / "b" / "student", "c": folder / kd / "student", "d": folder / kd / "student-int8"}.items():
        config = run_config(checkpoint.parent)
        model, meta = load_model(checkpoint, "student")
        model.eval()
        frontend, labels = Frontend(model.frontend), list(meta.labels)
        rate = frontend.spec.sample_rate
        validation = validation_soundscapes(config, open_data(config.data), rate)
        settings = event_settings(config)
        curves = threshold_curves([heard(model, frontend, config, s.audio) for s in validation], [s.events for s in validation],
                                  [s.audio.size / rate for s in validation], labels, settings, COLLAR)
        items = []
        for clip in tests.clips:
            audio = load_audio(clip.path, rate)
            items.append((heard(model, frontend, config, audio), list(clip.events), audio.size / rate))
        for rule, options in RULES.items():
            with contextlib.redirect_stderr(io.StringIO()):  # the per-class warnings are the point of the comparison
                thresholds = pick_thresholds(curves, **options).thresholds
            f1, detections, events, per_minute = test_scores(items, labels, settings, thresholds)
            rows.append(f"{folder.parent.name:14s} {system:3s} {rule:30s} {f1:7.1%} {detections:>6d}/{events:<5d} {per_minute:7.2f}")
            print(rows[-1], flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="bench_sed.py's OUT/real folders (trained systems inside)")
    parser.add_argument("--test-scapes", type=int, default=120, help="which held-out set: OUT/real/test_scapes-N")
    parser.add_argument("--kd", default="c-tfsepnet64", help="the folder of (c) and (d): c-FRAME_TEACHER (bench_sed --frame-teacher)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'bench':14s} {'sys':3s} {'rule':30s} {'F1@0.5':>7s} {'det/events':>12s} {'FA/min':>7s}", flush=True)
    for folder in args.folders:
        bench_folder(folder, args.test_scapes, args.kd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
