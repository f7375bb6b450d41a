"""Distillation on the demo data, same seeds and budgets: student without KD, with KD, with KD + QAT (INT8);
and one step's time split into data, student forward/backward and loss, showing the cached teacher costs nothing.

    python bench/bench_distill.py --teacher demo-out/teacher/student --data demo-out/data/clips.csv [--epochs 20]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from earmark.audio.datasets_torch import ClipDataset, collate
from earmark.audio.features_torch import Frontend
from earmark.audio.manifest import read_manifest
from earmark.distill import DistillConfig, distill, soft_kd
from earmark.students import create_student
from earmark.teachers.cache import TeacherCache


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher", default="demo-out/teacher/student")
    parser.add_argument("--data", default="demo-out/data/clips.csv")
    parser.add_argument("--student", default="tfsepnet40")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default=tempfile.mkdtemp(prefix="bench-distill-"))
    args = parser.parse_args()
    out = Path(args.out)
    base = dict(data=args.data, student=args.student, epochs=args.epochs, batch_size=32, restart_epochs=args.epochs,
                objective="detect", temperature=1.0, hard_weight=0.1, progress=False, seed=0)
    results = {}
    for name, extra in {"no KD": dict(kd=False), "KD": dict(teachers=[args.teacher]),
                        "KD + QAT": dict(teachers=[args.teacher], qat=True, qat_epochs=3)}.items():
        folder = out / name.replace(" ", "").replace("+", "_")
        distill(DistillConfig(out=str(folder), **base, **extra))
        r = json.loads((folder / "results.json").read_text())
        results[name] = r.get("int8", r["float"])["accuracy"]
    results = json.loads((Path(args.teacher).parent / "results.json").read_text())
    teacher = results.get("test", results.get("float", {})).get("accuracy")  # a fine-tuned teacher's run, or a student's
    print(f"teacher test accuracy {teacher:.1%}")
    for name, acc in results.items():
        print(f"student {args.student} {name:<9} test accuracy {acc:.1%}")

    # one step, split: the teacher's targets come from the cache, a memory-mapped lookup by clip id
    manifest = read_manifest(args.data)
    cache = TeacherCache.open(out / "KD" / "teacher-cache")
    student = create_student(args.student, len(manifest.labels))
    frontend = Frontend(student.frontend)
    optimizer = torch.optim.Adam(student.parameters())
    loader = iter(DataLoader(ClipDataset(manifest, frontend.spec.sample_rate, 1.0, train=True), batch_size=32, collate_fn=collate))
    split = {"data loading": 0.0, "teacher lookup": 0.0, "student forward+backward": 0.0, "loss": 0.0}
    steps = 10
    for _ in range(steps):
        t = time.perf_counter(); batch = next(loader); split["data loading"] += time.perf_counter() - t
        t = time.perf_counter(); teacher_logits = torch.from_numpy(cache.lookup(batch["id"])); split["teacher lookup"] += time.perf_counter() - t
        t = time.perf_counter(); logits = student(frontend(batch["wave"]).unsqueeze(1)); forward = time.perf_counter() - t
        t = time.perf_counter(); loss = soft_kd(logits, teacher_logits, batch["target"]); split["loss"] += time.perf_counter() - t
        t = time.perf_counter(); optimizer.zero_grad(); loss.backward(); optimizer.step()
        split["student forward+backward"] += forward + time.perf_counter() - t
    total = sum(split.values())
    for name, seconds in split.items():
        print(f"  {name:<26} {1000 * seconds / steps:8.2f} ms/step  {seconds / total:6.1%}")


if __name__ == "__main__":
    main()
