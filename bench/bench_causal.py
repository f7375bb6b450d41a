"""Causal (stateful) against windowed detectors on one stream: how long each frame's score waits for the model, and CPU
time per second of audio (thread CPU time, one ONNX Runtime thread, BLAS pinned to one), the models' runs interleaved over rounds.

By default both students are built untrained (the cost and the wait do not depend on the weights) and exported fp32:
crnn_causal (stateful, 62.5-ms hops) and the frame-level tfsepnet40 (1-s windows every 0.5 s, `listen`'s default).
Pass exported files to compare trained ones:

    python bench/bench_causal.py [--models causal.onnx windowed.onnx] [--seconds 60] [--rounds 5]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from earmark.engine.checkpoint import save_checkpoint
from earmark.export import export_onnx
from earmark.export.inputs import test_signals
from earmark.export.timing import describe_cpu
from earmark.runtime import StreamingClassifier
from earmark.students import create_student, student_checkpoint_meta

LABELS = [f"event{i}" for i in range(8)]
STUDENTS = {"crnn_causal": "stateful, 62.5-ms hops", "tfsepnet40": "1-s windows every 0.5 s"}


def untrained(name: str, folder: Path) -> Path:
    """A frame detector ``name`` with initial weights, exported fp32 into ``folder``."""
    torch.manual_seed(0)
    model = create_student(name, len(LABELS), "frame")
    save_checkpoint(folder / name, model.state_dict(), student_checkpoint_meta(model, name, LABELS, "frame", objective="detect",
                                                                             window_seconds=1.0, hop_seconds=0.5))
    return export_onnx(folder / name, folder / f"{name}.onnx").path


def measure(model: Path, seconds: float, block_seconds: float = 0.1) -> dict[str, float]:
    """Push ``seconds`` of test audio in blocks; thread CPU per audio second, and for every output frame how long a sound
    starting with it waits for its score (the stream time its window was heard minus the frame's start)."""
    classifier = StreamingClassifier(model)
    rate = classifier.spec.sample_rate
    wave = np.concatenate(test_signals(rate, 5.0, count=max(1, int(seconds // 5))))
    block = int(block_seconds * rate)
    waits, started = [], time.thread_time()
    for start in range(0, wave.size, block):
        for result in classifier.push(wave[start:start + block], rate):
            waits += [result.heard - segment.start for segment in result.segments]  # a sound starting in the segment
    cpu = time.thread_time() - started
    meta = classifier.metadata
    return {"cpu_per_audio_s": cpu / (wave.size / rate), "wait_median": float(np.median(waits)), "wait_p90": float(np.percentile(waits, 90)),
            "hop": meta.hop_seconds, "stateful": meta.stateful}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", help="exported .onnx files (default: untrained crnn_causal and tfsepnet40)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=5, help="runs of every model, interleaved (the order alternates)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{describe_cpu()}; ONNX Runtime and BLAS one thread each")
    with tempfile.TemporaryDirectory() as tmp:
        models = [Path(m) for m in args.models] if args.models else [untrained(name, Path(tmp)) for name in STUDENTS]
        runs: dict[Path, list[dict[str, float]]] = {model: [] for model in models}
        for round_ in range(args.rounds):  # a busy machine slows whole stretches: each round times every model
            for model in models if round_ % 2 == 0 else models[::-1]:
                runs[model].append(measure(model, args.seconds))
        print(f"{'model':24s} {'kind':>10s} {'hop s':>7s} {'frame waits ms (p50/p90)':>26s} {'CPU s / audio s (median)':>25s} "
              f"CPU x {models[-1].name} (median, range over rounds)")
        for model in models:
            m, cpu = runs[model][0], [r["cpu_per_audio_s"] for r in runs[model]]
            ratios = [r["cpu_per_audio_s"] / last["cpu_per_audio_s"] for r, last in zip(runs[model], runs[models[-1]])]
            print(f"{model.name:24s} {'stateful' if m['stateful'] else 'windowed':>10s} {m['hop']:7.4f} "
                  f"{m['wait_median'] * 1000:12.0f} / {m['wait_p90'] * 1000:<11.0f} {np.median(cpu):25.4f} "
                  f"{np.median(ratios):28.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
