"""`earmark adapt MODEL EXAMPLES --background SITE.wav`: a deployed detector taught the user's sounds and site."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from earmark.adapt import FinetuneSettings
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
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime (and torch) threads")
    tuning = parser.add_argument_group("fine-tune (MODEL a checkpoint folder; needs torch)")
    tuning.add_argument("--int8", action="store_true", help="also write an INT8 file (OUT-int8.onnx), calibrated on the examples "
                       "(a causal student: its weights rounded to INT8)")
    tuning.add_argument("--steps", type=int, default=FinetuneSettings.steps, help="training steps")
    tuning.add_argument("--body-lr", type=float, default=FinetuneSettings.body_lr, help="the body's learning rate (0 freezes it)")
    add_event_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from earmark.adapt import AdaptSettings, adapt, read_enrolment, write_adapted
    from earmark.evaluation import deployable
    from earmark.runtime import load_backend
    from earmark.runtime.cli import event_settings

    if args.steps < 1 or args.body_lr < 0:
        raise ValueError("--steps must be at least 1 and --body-lr at least 0; e.g. --steps 3200 --body-lr 3e-3.")
    if args.folds < 2 or not args.max_false_alarms >= 0:
        raise ValueError("--folds must be at least 2 and --max-false-alarms at least 0; e.g. --folds 5 --max-false-alarms 60.")
    model = Path(args.model)
    out = Path(args.out) if args.out else model.with_name(f"{model.stem}-adapted.onnx")
    settings = AdaptSettings(args.max_false_alarms, args.folds, seed=args.seed)
    if model.is_dir() and (model / "earmark.json").is_file():
        return _finetune(args, model, out, settings)
    if args.int8:
        raise ValueError("--int8 applies to a checkpoint folder as MODEL (fine-tuned, then quantized); adapt the INT8 .onnx itself instead.")
    with deployable(model) as onnx_path:
        meta = load_backend(onnx_path).metadata
        enrolment = read_enrolment(args.examples, args.background, meta.frontend.sample_rate, meta.labels, args.new_labels)
        adapted = adapt(onnx_path, enrolment, event_settings(args, meta)[0], settings, args.threads)
        write_adapted(onnx_path, adapted, out)
    _report(enrolment, adapted.validation, adapted.seconds, args.max_false_alarms, {"": out})
    return 0


def _finetune(args: argparse.Namespace, model: Path, out: Path, settings) -> int:
    """A checkpoint as MODEL: the student fine-tuned (``earmark.adapt.finetune``), written as fp32 (and INT8)."""
    import time

    from earmark.adapt import read_enrolment
    from types import SimpleNamespace

    from earmark.engine import read_meta
    from earmark.runtime.cli import event_settings

    try:
        from earmark.adapt.finetune import finetune
    except ImportError:
        raise ValueError(f"{model} is a checkpoint: fine-tuning it needs torch (pip install earmark[train]); in the edge install "
                         "pass its exported .onnx instead.") from None
    meta = read_meta(model)
    enrolment = read_enrolment(args.examples, args.background, meta.frontend["sample_rate"], tuple(meta.labels), args.new_labels)
    outs = {"fp32": out, **({"int8": out.with_name(f"{out.stem}-int8.onnx")} if args.int8 else {})}
    started = time.perf_counter()
    defaults = SimpleNamespace(labels=meta.labels, thresholds={}, default_threshold=0.5, postprocess=meta.extra.get("postprocess", {}))
    validations = finetune(model, enrolment, event_settings(args, defaults)[0], outs,
                           settings, FinetuneSettings(steps=args.steps, body_lr=args.body_lr), args.threads)
    for precision, v in validations.items():
        _report(enrolment, {**v, "folds": 1}, time.perf_counter() - started, args.max_false_alarms, {precision: outs[precision]})
    return 0


def _report(enrolment, v: dict, seconds: float, budget: float, outs: dict[str, Path]) -> None:
    """What was enrolled, what the thresholds reach on held-out material, what was written."""
    counts = enrolment.counts()
    for precision, out in outs.items():
        print(f"enrolled {len(counts)} labels ({', '.join(f'{label} {n}' for label, n in counts.items())} examples) over "
              f"{enrolment.background_seconds:.0f} s of site audio in {seconds:.0f} s{f' ({precision})' if precision else ''}")
        print(f"held out ({v['folds']} fold(s), {60 * v['site_hours']:.1f} min of site): thresholds "
              + ", ".join(f"{label} {t:g}" for label, t in v["thresholds"].items()) + f", event F1 "
              f"{v['f1']:.0%}, events found " + ", ".join(f"{label} {recall:.0%}" for label, recall in v["recall"].items())
              + f"; {v['false_alarms_per_hour']:.0f} false alarms per hour of site (budget {budget:g})")
        if not v["within_budget"]:
            print(f"warning: no threshold finds an event of {', '.join(v['missed'])} within its share of {budget:g} false alarms "
                  "per hour of site; it keeps the top threshold: add examples, record a longer site, or raise --max-false-alarms.",
                  file=sys.stderr)
        print(f"wrote {out}; next: earmark listen {out} --source mic")
