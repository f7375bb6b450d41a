"""ACM-SSKD's Algorithm A1 on the demo data: test accuracy after each iteration of pretraining + KD, against the KD
teacher and against the same transformer trained on the labels alone (same seed and epochs per stage).

    python bench/bench_acmsskd_a1.py [--iterations 3] [--steps 100] [--epochs 20] [--teacher atst_clip_tiny]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from earmark.audio.manifest import read_manifest
from earmark.audio.spec import get_frontend
from earmark.audio.synth import synthesize
from earmark.engine.checkpoint import checkpoint_hash, load_model
from earmark.teachers.finetune import FinetuneConfig, finetune
from earmark.teachers.iterate import acmsskd_iterations
from earmark.teachers.predict import Predictor, predict_to_cache
from earmark.teachers.pretrain import PretrainConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="self-supervised steps per iteration")
    parser.add_argument("--epochs", type=int, default=20, help="KD (and label-only) epochs per iteration")
    parser.add_argument("--teacher", default="atst_clip_tiny", help="the registry teacher fine-tuned first, then distilled from")
    parser.add_argument("--out", default=tempfile.mkdtemp(prefix="bench-a1-"))
    args = parser.parse_args()
    out = Path(args.out)
    data = synthesize(out / "data", clips_per_class=40, soundscapes=1)
    accuracy = lambda folder: json.loads((Path(folder) / "results.json").read_text())["test"]["accuracy"]

    teacher = finetune(FinetuneConfig(args.teacher, str(data.clips_csv), str(out / "teacher"), epochs=args.epochs, lr=1e-3, progress=False))
    model, meta = load_model(teacher, "teacher")
    cache = predict_to_cache([Predictor(model, get_frontend(meta.frontend), checkpoint_hash(teacher))], read_manifest(data.clips_csv),
                             out / "teacher-cache", 1.0)
    labels_only = FinetuneConfig("acmsskd_tiny", str(data.clips_csv), str(out / "labels-only"), epochs=args.epochs, lr=1e-3, progress=False)
    finetune(labels_only)

    start = time.perf_counter()
    ssl = PretrainConfig("acmsskd", str(data.clips_csv), str(out / "a1"), "acmsskd_tiny", steps=args.steps, batch_size=16, lr=1e-3,
                         clip_seconds=1.0, ckpt_every=args.steps, progress=False)
    kd = FinetuneConfig("", str(data.clips_csv), "", epochs=args.epochs, lr=1e-3, progress=False, kd_cache=str(cache))
    acmsskd_iterations(ssl, kd, args.iterations)
    seconds = time.perf_counter() - start
    history = json.loads((out / "a1" / "iterations.json").read_text())

    print(f"teacher {args.teacher} (fine-tuned on labels): {accuracy(out / 'teacher'):.1%}")
    print(f"acmsskd_tiny on labels only:            {accuracy(out / 'labels-only'):.1%}")
    for h in history:
        print(f"A1 iteration {h['iteration']} (ssl lr {h['ssl_lr']:.2e}, kd lr {h['kd_lr']:.2e}): {h['test']['accuracy']:.1%}")
    print(f"{args.iterations} iterations in {seconds:.0f} s; chance {1 / len(read_manifest(data.clips_csv).labels):.1%}")


if __name__ == "__main__":
    main()
