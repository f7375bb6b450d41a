"""`earmark tune RUN`: tune a finished detector run's event thresholds again, with another criterion or scope."""

from __future__ import annotations

import argparse
from pathlib import Path

from earmark.audio.options import NON_NEGATIVE_NUMBER


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="the --out folder of an `earmark distill --objective detect` run")
    parser.add_argument("--max-false-alarms", type=NON_NEGATIVE_NUMBER, help="the most events found with at most this many false alarms per hour "
                        "of validation audio, all classes together (each class's own with --per-class-thresholds; a PSD-ROC operating point), "
                        "instead of the best event F1")
    parser.add_argument("--per-class-thresholds", action="store_true",
                        help="one threshold per class instead of one shared by all (needs many validation events per class)")


def run(args: argparse.Namespace) -> int:
    from earmark.distill.run import retune

    tunings = retune(args.run, args.max_false_alarms, args.per_class_thresholds)
    for path, tuning in tunings.items():
        print(f"{path}: {tuning.criterion}")
        print(f"  {'class':24s} {'threshold':>9s} {'F1':>6s} {'found':>6s} {'FA/hour':>8s}")
        for label, threshold in sorted(tuning.thresholds.items()):
            if label in tuning.f1:
                print(f"  {label:24s} {threshold:9.2f} {tuning.f1[label]:6.1%} {tuning.recall[label]:6.1%} "
                      f"{tuning.false_alarms_per_hour[label]:8.1f}")
            else:
                print(f"  {label:24s} {threshold:9.2f}      - (no validation event)")
    final = list(tunings)[-1]
    print(f"wrote the thresholds into {', '.join(map(str, tunings))} and {Path(args.run) / 'thresholds.json'}")
    print(f"next: earmark export {final} --format onnx")
    return 0
