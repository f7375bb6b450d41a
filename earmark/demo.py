"""`earmark demo`: synthetic data -> SSL teacher -> fine-tune -> KD + QAT student -> INT8 ONNX -> live detection.

Every stage is the library call the matching verb makes; the summary ends with those commands so a
user can repeat each step on their own data.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


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


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo-out", help="where everything is written")
    parser.add_argument("--fast", action="store_true", help="a tiny budget (what the test suite runs)")


def _stage(number: int, title: str) -> float:
    print(f"\n[{number}/6] {title}", flush=True)
    return time.perf_counter()


def listen_to_soundscapes(model: Path, manifest_path: Path, out: Path) -> dict:
    """Stream each soundscape through the runtime in 100 ms blocks; event F1 against the strong labels; a timeline PNG."""
    from earmark.audio.io import load_audio
    from earmark.audio.manifest import read_manifest
    from earmark.runtime import EventSettings, EventTracker, StreamingClassifier
    from earmark.runtime.scoring import event_f1

    manifest = read_manifest(manifest_path)
    reference, estimated, busy, audio_seconds = [], [], 0.0, 0.0
    for index, clip in enumerate(manifest.clips):
        stream = StreamingClassifier(model)
        settings = EventSettings(stream.metadata.thresholds, median=3, min_duration=0.3, max_gap=0.3, offset_lag=stream.plan.offset_lag)
        tracker = EventTracker(stream.metadata.labels, settings)
        wave = load_audio(clip.path, 16000)
        results, block = [], 1600
        started = time.perf_counter()
        for start in range(0, wave.size, block):
            results += stream.push(wave[start:start + block], 16000)
        results += stream.flush()
        busy += time.perf_counter() - started
        audio_seconds += wave.size / 16000
        events = []
        for result in results:
            for segment in result.segments:
                events += tracker.push(segment)[0]
        events += tracker.flush(stream.seconds_processed)[0]
        found = [(e.onset, e.offset, e.label) for e in events]
        estimated += [(on + 1000 * index, off + 1000 * index, label) for on, off, label in found]
        reference += [(on + 1000 * index, off + 1000 * index, label) for on, off, label in clip.events]
        if index == 0:
            plot_timeline(clip, results, found, stream.metadata.labels, out / "timeline.png")
    onset_only = event_f1(reference, estimated, collar=0.5, offsets=False)
    strict = event_f1(reference, estimated, collar=0.5)
    return {"event_f1_onset": onset_only.f1, "event_f1": strict.f1, "precision": onset_only.precision, "recall": onset_only.recall,
            "rtf": busy / audio_seconds, "soundscapes": len(manifest.clips)}


def plot_timeline(clip, results, found, labels, path: Path) -> None:
    """The soundscape's spectrogram with ground truth (top) and detections and scores (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from earmark.audio import PRESETS, compute_features, load_audio

    spec = PRESETS["cpjku"]
    features = compute_features(spec, load_audio(clip.path, spec.sample_rate))
    seconds = features.shape[1] * spec.hop_seconds
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1.4]})
    top.imshow(features, origin="lower", aspect="auto", extent=(0, seconds, 0, spec.n_mels), cmap="magma")
    colours = {label: plt.cm.tab10(i % 10) for i, label in enumerate(labels)}
    for onset, offset, label in clip.events:
        top.axvspan(onset, offset, ymin=0.92, ymax=1.0, color=colours[label])
        top.text(onset, spec.n_mels * 0.84, label, color="white", fontsize=8)
    top.set_ylabel("mel bin")
    top.set_title(f"{clip.id}: ground truth (bars) over the log-mel spectrogram")
    times = [np.mean([s.start, s.end]) for r in results for s in r.segments]
    scores = np.stack([s.probs for r in results for s in r.segments])
    for i, label in enumerate(labels):
        bottom.plot(times, scores[:, i], color=colours[label], lw=1, label=label)
    for onset, offset, label in found:
        bottom.axvspan(onset, offset, ymin=0.0, ymax=0.08, color=colours[label])
    bottom.set_ylim(0, 1.05)
    bottom.set_xlabel("seconds")
    bottom.set_ylabel("score")
    bottom.set_title("student INT8 scores and detected events (bars)")
    bottom.legend(ncol=4, fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_demo(out: str | Path, budget: Budget = FULL) -> dict:
    """The whole pipeline; returns the summary it prints and writes to ``out/summary.json``."""
    from earmark.audio.synth import synthesize
    from earmark.distill import DistillConfig, distill
    from earmark.export import export_onnx
    from earmark.students import count, create_student, one_second_input
    from earmark.teachers.finetune import FinetuneConfig, finetune
    from earmark.teachers.pretrain import PretrainConfig, pretrain

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    t = _stage(1, "synthesising the demo dataset (8 event classes over 4 scenes, no downloads)")
    data = synthesize(out / "data", seed=0, clips_per_class=budget.clips_per_class, soundscapes=budget.soundscapes)
    times["data"] = time.perf_counter() - t
    t = _stage(2, f"pretraining a tiny ACM-SSKD teacher ({budget.pretrain_steps} steps, self-supervised)")
    pretrained = pretrain(PretrainConfig("acmsskd", str(data.clips_csv), str(out / "pretrain"), TEACHER, TEACHER_OVERRIDES,
                                         steps=budget.pretrain_steps, batch_size=16, lr=1e-3, clip_seconds=1.0, ckpt_every=50))
    times["pretrain"] = time.perf_counter() - t
    t = _stage(3, f"fine-tuning the teacher with a layer-wise head ({budget.finetune_epochs} epochs)")
    teacher = finetune(FinetuneConfig(str(pretrained), str(data.clips_csv), str(out / "finetune"), head="prenorm",
                                      epochs=budget.finetune_epochs, lr=1e-3, multi_label=True))
    times["finetune"] = time.perf_counter() - t
    t = _stage(4, f"distilling into {STUDENT} with KD ({budget.distill_epochs} epochs) and NNCF QAT ({budget.qat_epochs} epochs)")
    student = distill(DistillConfig(str(data.clips_csv), str(out / "distill"), [str(teacher)], STUDENT, epochs=budget.distill_epochs,
                                    batch_size=32, restart_epochs=max(budget.distill_epochs, 1), qat=True, qat_epochs=budget.qat_epochs,
                                    multi_label=True, temperature=1.0, hard_weight=0.1))
    times["distill"] = time.perf_counter() - t
    t = _stage(5, "exporting the QAT student to INT8 ONNX (Q/DQ, zero points 0)")
    exported = export_onnx(student, out / "student-int8.onnx", force=True)
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
        **listened, "seconds": times,
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
        ("total time", f"{sum(s['seconds'].values()):.0f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print("\n" + "=" * (width + 20))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("=" * (width + 20))
    print(f"pictures: {out / 'distill' / 'confusion.png'}, {out / 'timeline.png'}, {out / 'distill' / 'float' / 'curves.png'}")
    print("\nrepeat each step on your own data:")
    print(f"  earmark data check {data.clips_csv}")
    print(f"  earmark pretrain acmsskd --data {data.clips_csv} --teacher {TEACHER} --steps 1000 --out runs/pretrain")
    print(f"  earmark finetune runs/pretrain/teacher --data {data.clips_csv} --head prenorm --out runs/finetune")
    print(f"  earmark distill --teacher runs/finetune/teacher --student {STUDENT} --data {data.clips_csv} --qat --out runs/distill")
    print("  earmark export runs/distill/student-int8 --format onnx --out student-int8.onnx")
    print(f"  earmark listen student-int8.onnx --source mic    # or --source {data.root / 'audio' / 'scape-000.wav'}")


def run(args: argparse.Namespace) -> int:
    run_demo(args.out, FAST if args.fast else FULL)
    return 0
