"""`earmark demo`: synthetic data -> SSL teacher -> fine-tune -> KD + QAT student -> INT8 ONNX -> live detection.

The training stages run the very `earmark` commands the summary prints (parsed and run in this process),
so repeating them on the demo data rebuilds the model the demo shows. The detector trains as a user's
would: clip events mixed over event-free background recordings, sigmoid outputs (``--objective detect``),
thresholds tuned for the post-processing the demo listens with.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Budget:
    """How much work each stage does (the test suite runs ``FAST``)."""

    clips_per_class: int
    soundscapes: int
    pretrain_steps: int
    finetune_epochs: int
    distill_epochs: int
    qat_epochs: int


FULL = Budget(clips_per_class=60, soundscapes=6, pretrain_steps=200, finetune_epochs=40, distill_epochs=40, qat_epochs=3)
FAST = Budget(clips_per_class=10, soundscapes=2, pretrain_steps=6, finetune_epochs=2, distill_epochs=2, qat_epochs=1)
TEACHER = "acmsskd_tiny"
TEACHER_OVERRIDES = {"dim": 96, "depth": 3, "heads": 4}
STUDENT = "tfsepnet40"
LISTEN = {"median": 3, "min_duration": 0.3, "max_gap": 0.3}  # post-processing: thresholds are tuned for it, the demo listens with it
LISTEN_FLAGS = ["--median", "3", "--min-duration", "0.3", "--max-gap", "0.3"]
VERB_MODULES = {"pretrain": "earmark.teachers.cli_pretrain", "finetune": "earmark.teachers.cli_finetune", "distill": "earmark.distill.cli"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo-out", help="where everything is written")
    parser.add_argument("--fast", action="store_true", help="a tiny budget (what the test suite runs)")


def _stage(number: int, title: str) -> float:
    print(f"\n[{number}/6] {title}", flush=True)
    return time.perf_counter()


def listen_to_soundscapes(model: Path, manifest_path: Path, out: Path) -> dict:
    """Stream each soundscape through `listen`'s pipeline; event F1 (sed_eval, 0.5 s collar), PSDS and one timeline PNG."""
    from earmark.audio.manifest import read_manifest
    from earmark.evaluation import evaluate_soundscapes
    from earmark.runtime import EventSettings, load_backend

    settings = EventSettings(load_backend(model).metadata.thresholds, **LISTEN)
    r = evaluate_soundscapes(model, read_manifest(manifest_path), settings, out, collars=(0.5,), timelines=1)
    events = r["events"]["0.5"]
    return {"event_f1_onset": events["onset"]["f1"], "event_f1": events["onset_offset"]["f1"], "precision": events["onset"]["precision"],
            "recall": events["onset"]["recall"], "psds1": r["psds"]["psds1"], "rtf": r["rtf"], "soundscapes": r["files"],
            "timeline": r["per_file"][0]["timeline"]}


def _verb(verb: str, argv: list[str]) -> str:
    """Run ``earmark VERB ARGV`` in this process, parsed by the verb's own parser; returns the command line."""
    import importlib

    module = importlib.import_module(VERB_MODULES[verb])
    parser = argparse.ArgumentParser(prog=f"earmark {verb}")
    module.configure(parser)
    parser.set_defaults(quiet=False)  # the logging options `earmark` itself adds to every verb
    module.run(parser.parse_args(argv))
    return shlex.join(["earmark", verb, *argv])


def run_demo(out: str | Path, budget: Budget = FULL) -> dict:
    """The whole pipeline; returns the summary it prints and writes to ``out/summary.json``."""
    from earmark.audio.synth import synthesize
    from earmark.export import export_onnx
    from earmark.students import count, create_student, one_second_input

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    times, commands = {}, []
    t = _stage(1, "synthesising the demo dataset (8 event classes over 4 scenes, event-free backgrounds, no downloads)")
    data = synthesize(out / "data", seed=0, clips_per_class=budget.clips_per_class, soundscapes=budget.soundscapes)
    clips, backgrounds = str(data.clips_csv), str(data.backgrounds)
    times["data"] = time.perf_counter() - t
    t = _stage(2, f"pretraining a tiny ACM-SSKD teacher ({budget.pretrain_steps} steps, self-supervised)")
    commands.append(_verb("pretrain", ["acmsskd", "--data", clips, "--out", str(out / "pretrain"), "--teacher", TEACHER,
                                       "--overrides", json.dumps(TEACHER_OVERRIDES), "--steps", str(budget.pretrain_steps),
                                       "--batch-size", "16", "--lr", "1e-3", "--clip-seconds", "1.0", "--ckpt-every", "50"]))
    times["pretrain"] = time.perf_counter() - t
    t = _stage(3, f"fine-tuning the teacher as a detector on mixtures over the backgrounds ({budget.finetune_epochs} epochs)")
    commands.append(_verb("finetune", [str(out / "pretrain" / "teacher"), "--data", clips, "--out", str(out / "finetune"),
                                       "--head", "prenorm", "--epochs", str(budget.finetune_epochs), "--lr", "1e-3",
                                       "--objective", "detect", "--backgrounds", backgrounds]))
    times["finetune"] = time.perf_counter() - t
    t = _stage(4, f"distilling into {STUDENT} with KD on mixtures ({budget.distill_epochs} epochs) and NNCF QAT ({budget.qat_epochs} epochs)")
    epochs = str(budget.distill_epochs)
    commands.append(_verb("distill", ["--teacher", str(out / "finetune" / "teacher"), "--student", STUDENT, "--data", clips,
                                      "--out", str(out / "distill"), "--objective", "detect", "--backgrounds", backgrounds,
                                      "--epochs", epochs, "--restart-epochs", epochs, "--batch-size", "32", "--qat",
                                      "--qat-epochs", str(budget.qat_epochs), "--temperature", "1.0", "--kd-lambda", "0.1",
                                      *LISTEN_FLAGS]))
    student = out / "distill" / "student-int8"
    times["distill"] = time.perf_counter() - t
    t = _stage(5, "exporting the QAT student to INT8 ONNX (Q/DQ, zero points 0)")
    exported = export_onnx(student, out / "student-int8.onnx", force=True)
    commands.append(shlex.join(["earmark", "export", str(student), "--format", "onnx", "--out", str(exported.path), "--force"]))
    commands.append(shlex.join(["earmark", "listen", str(exported.path), *LISTEN_FLAGS, "--source", "mic"]))
    times["export"] = time.perf_counter() - t
    t = _stage(6, "streaming the held-out soundscapes through the runtime in 100 ms blocks")
    listened = listen_to_soundscapes(exported.path, data.soundscapes_tsv, out)
    times["listen"] = time.perf_counter() - t
    model = create_student(STUDENT, 8)
    complexity = count(model, *one_second_input(model))
    teacher_results = json.loads((out / "finetune" / "results.json").read_text())["test"]
    student_results = json.loads((out / "distill" / "results.json").read_text())
    summary = {
        "teacher_accuracy": teacher_results.get("accuracy"), "student_fp32_accuracy": student_results["float"]["accuracy"],
        "student_int8_accuracy": student_results["int8"]["accuracy"], "params": complexity.params, "macs": complexity.macs,
        "int8_param_bytes": complexity.param_bytes("int8"), "onnx_bytes": exported.bytes, "onnx_latency_ms": exported.latency_ms,
        **listened, "seconds": times, "commands": commands,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary, out, data)
    return summary


def print_summary(s: dict, out: Path, data) -> None:
    """The table, the pictures, and the commands that repeat each step."""
    rows = [
        ("teacher (ACM-SSKD tiny, fine-tuned) accuracy", f"{s['teacher_accuracy']:.1%}"),
        (f"student {STUDENT} fp32 accuracy (KD)", f"{s['student_fp32_accuracy']:.1%}"),
        (f"student {STUDENT} INT8 accuracy (KD + QAT)", f"{s['student_int8_accuracy']:.1%}"),
        ("student parameters / MACs per second", f"{s['params']:,} / {s['macs']:,}"),
        ("student INT8 parameter bytes (DCASE limit 128,000)", f"{s['int8_param_bytes']:,}"),
        ("ONNX file bytes / latency per window", f"{s['onnx_bytes']:,} / {s['onnx_latency_ms']:.2f} ms"),
        ("streaming real-time factor (1 thread)", f"{s['rtf']:.4f}"),
        (f"event F1 on {s['soundscapes']} held-out soundscapes (onset collar 0.5 s)", f"{s['event_f1_onset']:.1%}"),
        ("event F1 with offsets", f"{s['event_f1']:.1%}"),
        ("PSDS1 (DCASE Task 4)", f"{s['psds1']:.3f}"),
        ("total time", f"{sum(s['seconds'].values()):.0f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print("\n" + "=" * (width + 20))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("=" * (width + 20))
    print(f"pictures: {out / 'distill' / 'confusion.png'}, {s['timeline']}, {out / 'distill' / 'float' / 'curves.png'}")
    print("\nthe commands that made this model (swap in your clips and background recordings to repeat it on your data):")
    print(f"  earmark data check {data.clips_csv}")
    for command in s["commands"]:
        print(f"  {command}")
    print(f"  (or listen to a file: --source {data.root / 'audio' / 'scape-000.wav'})")


def run(args: argparse.Namespace) -> int:
    run_demo(args.out, FAST if args.fast else FULL)
    return 0
