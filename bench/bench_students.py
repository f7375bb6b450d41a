"""Every registered student: parameters, MACs per second of audio, and CPU latency at batch 1 in PyTorch vs ONNX Runtime.

    python bench/bench_students.py [--runs 50] [--only tfsepnet40 tfsepnet40_25ms]

Latency is the calling thread's CPU time per call (one thread in both runtimes; median of ``--runs``, the two
runtimes interleaved), so a busy machine moves it little; wall time would swing several-fold on a shared 2-core box.
"""

import argparse
import tempfile
from pathlib import Path

import torch

from earmark.export import ScoresHead, session
from earmark.export.timing import describe_cpu, interleaved
from earmark.students import REGISTRY, count, create_student, one_second_input


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--only", nargs="+", choices=sorted(REGISTRY), help="these students (default: every registered one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{describe_cpu()}; one thread; milliseconds of the calling thread's CPU time per call (median of {args.runs})")
    print(f"{'student':<18} {'params':>10} {'MACs/s':>12} {'torch ms':>9} {'ORT ms':>8} {'torch/ORT':>9}")
    for name in args.only or REGISTRY:
        student = create_student(name, 10).eval()
        shape = one_second_input(student)
        c = count(student, *shape)
        model = ScoresHead(student, "clip", "detect").eval()  # ModelOutput -> a tensor the tracer takes
        x = torch.randn(1, 1, *shape)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.onnx"
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["features"])
            ort_session = session(path)  # one thread, no spinning: the settings every bench and the daemon use
            with torch.inference_mode():
                timings = interleaved({"torch": lambda: model(x), "ort": lambda: ort_session.run(None, {"features": x.numpy()})}, args.runs)
            t_torch, t_ort = timings["torch"].cpu_p50, timings["ort"].cpu_p50
        print(f"{name:<18} {c.params:>10,} {c.macs:>12,} {t_torch:>9.3f} {t_ort:>8.3f} {t_torch / t_ort:>9.2f}")


if __name__ == "__main__":
    main()
