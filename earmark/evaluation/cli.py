"""`earmark eval MODEL DATA`: a checkpoint or .onnx on a clip manifest or on strong-label soundscapes."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from earmark.audio.options import GAP_SECONDS, NON_NEGATIVE, NON_NEGATIVE_NUMBER, SECONDS
from earmark.runtime.cli import add_event_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an .onnx written by `earmark export`, or a checkpoint folder (evaluated through its ONNX export)")
    parser.add_argument("data", help="a clip manifest (accuracy, mAP), or soundscapes with strong labels: a DESED-style TSV "
                        "(filename, onset, offset, event_label) or any manifest with onsets and offsets")
    parser.add_argument("--audio-root", help="folder of the audio files that DATA names (default: DATA's folder, or its audio/)")
    parser.add_argument("--out", help="where results.json and the pictures go (default: MODEL-eval beside the model)")
    parser.add_argument("--collar", type=GAP_SECONDS, nargs="+", default=[0.2], help="onset collar(s) in seconds for event F1 (DCASE: 0.2)")
    parser.add_argument("--offset-ratio", type=NON_NEGATIVE_NUMBER, default=0.5, help="offset collar as a fraction of the event's length (sed_eval: 0.5)")
    parser.add_argument("--timelines", type=NON_NEGATIVE, help="draw the timelines of the first N soundscapes only (default: all)")
    parser.add_argument("--hop", type=SECONDS, help="seconds between model runs (default: from the model)")
    parser.add_argument("--fold", type=NON_NEGATIVE, action="append", help="score only this fold (repeatable), e.g. the run's "
                        "--test-fold; default: every fold, said in the output, some of which the model may have trained on")
    add_event_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from earmark.audio.manifest import clip_fold, read_manifest
    from earmark.evaluation import clip_metrics, deployable, evaluate_soundscapes
    from earmark.runtime import load_backend
    from earmark.runtime.cli import event_settings

    manifest = read_manifest(args.data, audio_root=args.audio_root)
    folds = sorted({clip_fold(clip) for clip in manifest.clips})
    if args.fold:
        manifest = manifest.folds(args.fold)
        if not manifest.clips:
            raise ValueError(f"{args.data} has no clips in fold {' or '.join(map(str, args.fold))}; its folds are {folds}.")
        folds = sorted(set(args.fold))
    model = Path(args.model)
    out = Path(args.out) if args.out else model.with_name(f"{model.stem}-eval")
    with deployable(model) as onnx_path:
        out.mkdir(parents=True, exist_ok=True)
        results = {"model": str(model), "evaluated": str(onnx_path) if onnx_path == model else "its fp32 ONNX export (int8 for a QAT checkpoint)",
                   "data": str(args.data), "folds": folds}
        if manifest.task == "frame":
            settings, _ = event_settings(args, load_backend(onnx_path).metadata)
            results["postprocess"] = dataclasses.asdict(settings)
            results.update(evaluate_soundscapes(onnx_path, manifest, settings, out, tuple(args.collar), args.offset_ratio,
                                                args.timelines, args.hop))
        else:
            results.update(clip_metrics(onnx_path, manifest, out))
    (out / "results.json").write_text(json.dumps(results, indent=2, allow_nan=False))
    print(f"scored folds {', '.join(map(str, folds))} of {args.data}" + ("" if args.fold else " (every fold: pass --fold F to score "
                                                                         "only the fold a run held out, its --test-fold)"))
    (print_soundscapes if manifest.task == "frame" else print_clips)(results)
    print(f"results in {out / 'results.json'}")
    return 0


def print_clips(r: dict) -> None:
    """Clip metrics in a few lines."""
    print(f"{r['clips']} clips{' (the scene head)' if r['head'] == 'scene' else ''}: mAP {r['map']:.3f}", end="")
    if "accuracy" in r:
        print(f", accuracy {r['accuracy']:.1%}, macro accuracy {r['macro_accuracy']:.1%}; confusion matrix in {r['confusion']}")
    else:
        print(f", top-1 label among the clip's labels {r['top1_in_labels']:.1%}")


def percent(value: float | None) -> str:
    """A share as a percentage; "-" where it is undefined."""
    return "-" if value is None else f"{value:.1%}"


def print_soundscapes(r: dict) -> None:
    """Event F1 per collar, PSDS, segment mAP, false alarms, and a per-class table at the first collar."""
    print(f"{r['files']} soundscapes, {r['audio_minutes']:.1f} min, real-time factor {r['rtf']:.4f}")
    for collar, m in r["events"].items():
        on, both = m["onset"], m["onset_offset"]
        print(f"event F1 (collar {collar} s): onset {percent(on['f1'])} (P {percent(on['precision'])}, R {percent(on['recall'])}), "
              f"onset+offset {percent(both['f1'])}; class-wise mean {percent(on['macro_f1'])} / {percent(both['macro_f1'])}; "
              f"{m['detections']} detections for {m['references']} events")
        heard = m["any_label"]
        print(f"  any label (heard, named or not): onset {percent(heard['onset']['f1'])} (P {percent(heard['onset']['precision'])}, "
              f"R {percent(heard['onset']['recall'])}), onset+offset {percent(heard['onset_offset']['f1'])}")
    p, fa = r["psds"], r["false_alarms"]
    psds2 = "-" if p["psds2"] is None else f"{p['psds2']:.3f}"
    print(f"PSDS1 {p['psds1']:.3f}, PSDS2 {psds2} (sed_scores_eval, DCASE Task 4 settings; classes without events left out: {p['excluded'] or 'none'})")
    seg = r["segments"]
    print(f"segment mAP ({seg['segment_seconds']:g}-s segments, threshold-free): {percent(seg['mAP'])} over the classes with events; "
          f"any label {percent(seg['any_label'])}")
    lat = r["latency"]
    if lat["hits"]:
        print(f"detection latency (reference onset -> ON, stream time): median {lat['median'] * 1000:.0f} ms, "
              f"p90 {lat['p90'] * 1000:.0f} ms over {lat['hits']} hits (onset collar {lat['collar']} s)")
    print(f"false alarms: {fa['false_alarms']} in {fa['background_minutes']:.1f} min of background-only audio ({fa['per_minute']:.2f}/min)")
    first = next(iter(r["events"].values()))
    rows = [(label, str(c["references"]), str(c["detections"]), percent(c["onset_f1"]), percent(c["onset_offset_f1"]),
             f"{p['psds1_per_class'][label]:.3f}" if label in p["psds1_per_class"] else "-",
             percent(seg["per_class"][label]) if label in seg["per_class"] else "-")
            for label, c in first["per_class"].items()]
    header = ("label", "events", "detections", f"F1 onset@{first['collar']}", "F1 +offset", "PSDS1", "segment AP")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
