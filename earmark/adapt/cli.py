"""`earmark adapt MODEL EXAMPLES --background SITE.wav`: a deployed detector taught the user's sounds and site."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from earmark.runtime.cli import add_event_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the deployed model: an .onnx written by `earmark export` (fp32 or INT8), or a checkpoint folder")
    parser.add_argument("examples", help="your labelled examples: a folder with one sub-folder of recordings per label, or a manifest")
    parser.add_argument("--background", nargs="+", required=True, metavar="SITE",
                        help="recordings (or folders of them) of the site with nothing happening; 2 minutes or more")
    parser.add_argument("--out", help="the adapted .onnx (default: MODEL-adapted.onnx beside the model)")
    parser.add_argument("--new-labels", action="store_true", help="accept labels the model does not have (new sounds)")
    parser.add_argument("--max-false-alarms", type=float, default=60.0,
                        help="false alarms per hour of site audio, all labels together, that the thresholds allow")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds for the thresholds (at most the fewest examples of a label)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the mixtures of the examples over the site")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    add_event_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from earmark.adapt import AdaptSettings, adapt, read_enrolment, write_adapted
    from earmark.evaluation import deployable
    from earmark.runtime import load_backend
    from earmark.runtime.cli import event_settings

    if args.folds < 2 or not args.max_false_alarms >= 0:
        raise ValueError("--folds must be at least 2 and --max-false-alarms at least 0; e.g. --folds 5 --max-false-alarms 60.")
    model = Path(args.model)
    out = Path(args.out) if args.out else model.with_name(f"{model.stem}-adapted.onnx")
    with deployable(model) as onnx_path:
        meta = load_backend(onnx_path).metadata
        enrolment = read_enrolment(args.examples, args.background, meta.frontend.sample_rate, meta.labels, args.new_labels)
        settings, _ = event_settings(args, meta)
        adapted = adapt(onnx_path, enrolment, settings, AdaptSettings(args.max_false_alarms, args.folds, seed=args.seed), args.threads)
        write_adapted(onnx_path, adapted, out)
    v = adapted.validation
    counts = enrolment.counts()
    print(f"enrolled {len(counts)} labels ({', '.join(f'{label} {n}' for label, n in counts.items())} examples) over "
          f"{enrolment.background_seconds:.0f} s of site audio in {adapted.seconds:.0f} s")
    print(f"cross-validated ({v['folds']} folds, {60 * v['site_hours']:.1f} min of site): threshold {v['threshold']}, event F1 "
          f"{v['f1']:.0%}, events found " + ", ".join(f"{label} {recall:.0%}" for label, recall in v["recall"].items())
          + f"; {v['false_alarms_per_hour']:.0f} false alarms per hour of site (budget {args.max_false_alarms:g})")
    if not v["within_budget"]:
        print(f"warning: no threshold finds an event within {args.max_false_alarms:g} false alarms per hour of site; the model "
              f"keeps {v['threshold']}: add examples, record a longer site, or raise --max-false-alarms.", file=sys.stderr)
    print(f"wrote {out}; next: earmark listen {out} --source mic")
    return 0
