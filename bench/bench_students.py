"""Every registered student: parameters, MACs per second of audio, and CPU latency at batch 1 in PyTorch vs ONNX Runtime.

    python bench/bench_students.py [--runs 50]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from earmark.students import REGISTRY, count, create_student, one_second_input


def median_ms(call, runs: int) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'student':<18} {'params':>10} {'MACs/s':>12} {'torch ms':>9} {'ORT ms':>8} {'torch/ORT':>9}")
    for name in REGISTRY:
        model = create_student(name, 10).eval()
        shape = one_second_input(model)
        c = count(model, *shape)
        x = torch.randn(1, 1, *shape)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.onnx"
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["features"])
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            with torch.inference_mode():
                t_torch = median_ms(lambda: model(x), args.runs)
            t_ort = median_ms(lambda: session.run(None, {"features": x.numpy()}), args.runs)
        print(f"{name:<18} {c.params:>10,} {c.macs:>12,} {t_torch:>9.3f} {t_ort:>8.3f} {t_torch / t_ort:>9.2f}")


if __name__ == "__main__":
    main()
