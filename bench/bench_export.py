"""tfsepnet64: PyTorch eager vs ONNX Runtime fp32 / fp16 / int8 (PTQ) at batch 1, as ratios measured in one run.

    python bench/bench_export.py [--runs 100] [--out /tmp/bench-export]
"""

import argparse
import tempfile
from pathlib import Path

import torch

from earmark.audio.synth import synthesize
from earmark.engine.checkpoint import save_checkpoint
from earmark.export import bench_onnx, bench_torch, export_onnx
from earmark.export.benchmark import format_table, frontend_cost_ms, read_metadata
from earmark.students import create_student, student_checkpoint_meta


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--out", default=tempfile.mkdtemp(prefix="bench-export-"))
    args = parser.parse_args()
    out = Path(args.out)
    data = synthesize(out / "data", clips_per_class=4, soundscapes=1)
    labels = sorted({"alarm", "beep", "bell", "burst", "chirp", "knock", "siren", "whistle"})
    model = create_student("tfsepnet64", len(labels))
    save_checkpoint(out / "ckpt", model.state_dict(), student_checkpoint_meta(model, "tfsepnet64", labels))
    files = {p: export_onnx(out / "ckpt", out / f"{p}.onnx", p, calib=str(data.clips_csv) if p == "int8" else None, force=True)
             for p in ("fp32", "fp16", "int8")}
    rows = bench_torch(out / "ckpt", batch=8, runs=args.runs)
    for result in files.values():
        rows += bench_onnx(result.path, batch=8, runs=args.runs)
    print(format_table(rows))
    one = [r for r in rows if r.threads == 1 and r.batch == 1]
    base = next(r for r in one if r.backend == "pytorch").p50_ms
    print("\nbatch 1, one thread, p50 relative to PyTorch eager:")
    for r in one:
        print(f"  {r.backend:<12} {r.precision:<5} {r.p50_ms:7.3f} ms   x{base / r.p50_ms:5.2f} faster")
    for p, result in files.items():
        print(f"  {p} file {result.bytes:,} bytes, parity max|diff| {result.parity.max_abs_diff:.2e}")
    print(f"frontend (numpy, tfsepnet preset): {frontend_cost_ms(read_metadata(files['fp32'].path)):.2f} ms per second of audio")
    torch.set_num_threads(1)


if __name__ == "__main__":
    main()
