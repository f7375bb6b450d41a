"""tfsepnet64 and tfsepnet40 side by side: file and weight bytes per dtype, batch-1 latency on one thread, GEMM-bound share.

Rows per student: PyTorch eager fp32; ONNX Runtime fp32 as issue #14 found it (ResNorm as the reference code's ops,
channel shuffles in place) and as exported now (one InstanceNormalization between NHWC transposes, shuffles folded into
transition convs, `runtime_layout`'s split stem and blocked-layout blocks where the widths allow); INT8 from the quantized-student format (NNCF, BatchNorm folded, untrained
quantizers calibrated on synthetic clips) in scopes pointwise, all and weights (weight-only INT8, no NNCF), and
post-training INT8 (onnxruntime.quantization) in scopes pointwise, all and integer (u8 activations, every op with an
integer kernel but the depthwise convs). All sessions run interleaved in one process (each file opened once before, kept open), one intra-op thread, spinning off, BLAS pinned to one thread,
each call timed in the calling thread's CPU time (ratios) and wall time; the GEMM bound is numpy's single-thread
float32 matmul measured in the same run, in CPU time too. Untrained weights on synthetic
audio: speed and size figures, not accuracy.

``--qlinear-bound`` adds the best case for INT8 pointwise convs on ONNX Runtime's CPU kernels: the fp32 file with only its
1x1 convs (and the ReLU after each) quantized by onnxruntime.quantization, inputs and outputs (U8S8 and S8S8, per-channel
weights, INT32 biases), so that ONNX Runtime fuses every one into a QLinearConv (the rows say how many it fused). Not a
deployable export (no parity gate): a bound on what QAT output quantizers could buy.

Accuracy comes from trained runs: ``--accuracy RUN ...`` takes `earmark distill --qat` folders (student/ and
student-int8/), exports both, and measures top-1 on the run's held-out test fold through the runtime (numpy frontend,
ONNX Runtime), as `earmark eval` does.

    python bench/bench_export.py [--runs 200] [--students tfsepnet64 tfsepnet40] [--out DIR] [--accuracy RUN ...] [--qlinear-bound]
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from earmark.audio.manifest import read_manifest
from earmark.audio.synth import synthesize
from earmark.engine.checkpoint import save_checkpoint
from earmark.export import export_onnx, onnx_export, session
from earmark.export.benchmark import optimized_op_counts
from earmark.export.timing import describe_cpu, interleaved, repeated
from earmark.export.inputs import manifest_features
from earmark.students import stored_bytes
from earmark.students import count, create_student, one_second_input, quantize, save_quantized_checkpoint, student_checkpoint_meta
from earmark.students import tfsepnet

LABELS = ["alarm", "beep", "bell", "burst", "chirp", "knock", "siren", "whistle"]


def reference_resnorm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """IN_freq as the reference code writes it (mean, unbiased var, sqrt, divide): ~10 ONNX ops per norm."""
    mean = x.mean(dim=(1, 3), keepdim=True)
    return (x - mean) / torch.sqrt(x.var(dim=(1, 3), keepdim=True) + eps)


def gemm_gflops(size: int = 512, runs: int = 20) -> float:
    """Single-thread float32 GEMM throughput (2 n^3 FLOPs per product), the compute bound the models are held to."""
    a, b = np.random.default_rng(0).standard_normal((2, size, size)).astype(np.float32)
    return 2 * size**3 / (repeated(lambda: a @ b, runs, warmup=1).cpu_p50 / 1000) / 1e9


def export_student(name: str, out: Path, calib: Path, skip_nncf: bool) -> tuple[dict[str, Path], torch.nn.Module, int]:
    """Every variant of one untrained student; returns the files, the float model and its MACs per window."""
    torch.manual_seed(0)
    model = create_student(name, len(LABELS)).eval()
    meta = student_checkpoint_meta(model, name, LABELS, window_seconds=1.0)
    save_checkpoint(out / "ckpt", model.state_dict(), meta)
    files = {"fp32": export_onnx(out / "ckpt", out / "fp32.onnx", force=True).path}
    original, layout = tfsepnet.freq_instance_norm, onnx_export.runtime_layout
    tfsepnet.freq_instance_norm, onnx_export.runtime_layout = reference_resnorm, lambda model: model
    try:  # the graph as issue #14 found it: ResNorm as ~10 reduce/elementwise ops, the modules' own ops everywhere else
        files["fp32 before #14"] = export_onnx(out / "ckpt", out / "fp32-before.onnx", force=True).path
    finally:
        tfsepnet.freq_instance_norm, onnx_export.runtime_layout = original, layout
    spec = model.frontend
    inputs = None
    for scope in ("pointwise", "all", "integer", "weights"):
        if scope != "weights":  # weight-only INT8 comes from QAT only
            files[f"int8 PTQ {scope}"] = export_onnx(out / "ckpt", out / f"ptq-{scope}.onnx", "int8", calib=str(calib), force=True,
                                                     int8_scope=scope, min_agreement=0.0).path
        if skip_nncf or scope == "integer":  # the integer graph is post-training only
            continue
        if inputs is None:
            from earmark.audio.spec import get_frontend

            frontend = get_frontend(spec)
            inputs = torch.from_numpy(manifest_features(frontend, frontend.num_frames(frontend.sample_rate), str(calib), limit=32)[0])
        qmeta = student_checkpoint_meta(model, name, LABELS, window_seconds=1.0)
        save_quantized_checkpoint(out / f"q-{scope}", quantize(model, [inputs[i:i + 8] for i in range(0, len(inputs), 8)], scope), qmeta, scope)
        files[f"int8 QAT-format {scope}"] = export_onnx(out / f"q-{scope}", out / f"qat-{scope}.onnx", force=True, min_agreement=0.0).path
    return files, model, count(model, *one_second_input(model)).macs


def qlinear_bound(fp32: Path, calib: Path, activations: str) -> tuple[Path, int]:
    """``fp32`` with its 1x1 convs and their ReLUs quantized in and out (QDQ; ``activations`` "u8s8" or "s8s8"), and how
    many QLinearConv ONNX Runtime forms from it (its optimized graph)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from earmark.audio.metadata import METADATA_KEY, ModelMetadata
    from earmark.export.quantize import one_initializer_per_reader

    model = onnx.load(str(fp32))
    meta = ModelMetadata.from_json(next(p.value for p in model.metadata_props if p.key == METADATA_KEY))
    features = manifest_features(meta.frontend, meta.input_frames, str(calib), limit=16)[0]
    one_initializer_per_reader(model)
    nodes = []
    readers = {name: [n for n in model.graph.node if name in n.input] for n in model.graph.node for name in n.output}
    for node in model.graph.node:
        if node.op_type == "Conv" and next(list(a.ints) for a in node.attribute if a.name == "kernel_shape") == [1, 1]:
            after = readers[node.output[0]]
            nodes += [node.name] + [after[0].name for _ in after[:1] if len(after) == 1 and after[0].op_type == "Relu"]
    source, out = fp32.with_name(f"{fp32.stem}-named.onnx"), fp32.with_name(f"qlinear-{activations}.onnx")
    onnx.save(model, str(source))
    batches = iter([{"features": features[i:i + 1]} for i in range(len(features))])
    reader = type("Reader", (CalibrationDataReader,), {"get_next": lambda self: next(batches, None)})()
    signed = activations == "s8s8"
    quantize_static(str(source), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8 if signed else QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv", "Relu"], nodes_to_quantize=nodes,
                    extra_options={"ActivationSymmetric": signed, "WeightSymmetric": True})
    return out, optimized_op_counts(out, out.parent)["QLinearConv"]


def held_out_accuracy(run: Path, out: Path) -> None:
    """Top-1 of the fp32 and the QAT INT8 export of a distill run on its test fold (clips it never trained or chose on)."""
    from earmark.evaluation import clip_metrics

    config = json.loads((run / "config.json").read_text())
    test = read_manifest(config["data"]).folds([config["test_fold"]])
    out.mkdir(parents=True, exist_ok=True)
    files = {"fp32": export_onnx(run / "student", out / "fp32.onnx", force=True),
             "int8 (QAT)": export_onnx(run / "student-int8", out / "int8.onnx", force=True)}
    top1 = {label: clip_metrics(r.path, test, out)["accuracy"] for label, r in files.items()}
    scope = files["int8 (QAT)"].metadata.quantization.get("scope")
    print(f"\n{run}: {config['student']}, {len(test.clips)} held-out clips (fold {config['test_fold']} of {config['data']}), "
          f"INT8 scope {scope}; top-1 through the runtime (numpy frontend + ONNX Runtime)")
    print(f"{'model':<12} {'file bytes':>10} {'top-1':>7}")
    for label, result in files.items():
        print(f"{label:<12} {result.bytes:>10,} {top1[label]:>7.1%}")
    print(f"INT8 - fp32: {100 * (top1['int8 (QAT)'] - top1['fp32']):+.1f} points")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--students", nargs="*", default=["tfsepnet64", "tfsepnet40"])
    parser.add_argument("--skip-nncf", action="store_true", help="post-training INT8 only (NNCF calibration is the slow part)")
    parser.add_argument("--out", default=tempfile.mkdtemp(prefix="bench-export-"))
    parser.add_argument("--qlinear-bound", action="store_true",
                        help="add the fp32 file with only its 1x1 convs quantized in and out (fused into QLinearConv)")
    parser.add_argument("--accuracy", nargs="+", default=[], metavar="RUN",
                        help="`earmark distill --qat` run folders: top-1 of fp32 vs INT8 on their held-out test fold")
    args = parser.parse_args()
    out = Path(args.out)
    for i, run in enumerate(args.accuracy):
        held_out_accuracy(Path(run), out / f"accuracy-{i}")
    if args.accuracy and not args.students:
        return
    calib = synthesize(out / "data", clips_per_class=4, soundscapes=1).clips_csv
    torch.set_num_threads(1)
    with threadpool_limits(1):
        gflops = gemm_gflops()
        print(describe_cpu())
        print(f"single-thread float32 GEMM bound: {gflops:.1f} GFLOP/s of CPU time (numpy, 512 x 512, BLAS pinned to 1 thread)")
        for name in args.students:
            files, model, macs = export_student(name, out / name, calib, args.skip_nncf)
            for activations in ("u8s8", "s8s8") if args.qlinear_bound else ():
                path, fused = qlinear_bound(files["fp32"], calib, activations)
                files[f"QLinearConv {activations} ({fused})"] = path
            x = np.random.default_rng(0).standard_normal((1, 1, *one_second_input(model))).astype(np.float32)
            # Each file is opened once before the timed sessions, which stay open beside them: the first sessions a
            # process opens after the exports ran 12-15% slower whichever file they held (the fp32 file and the QAT
            # weights file, one graph op for op, swapped places when opened in reverse order; docs/export.md).
            spare = [session(path, 1) for path in files.values()]  # noqa: F841 (kept open)
            sessions = {label: session(path, 1) for label, path in files.items()}
            calls = {"pytorch fp32": lambda: model(torch.from_numpy(x))}
            calls.update({label: (lambda s=s: s.run(None, {"features": x})) for label, s in sessions.items()})
            with torch.inference_mode():
                times = interleaved(calls, args.runs)
            fp32_bytes, fp32_ms = files["fp32"].stat().st_size, times["fp32"].cpu_p50
            print(f"\n{name}: {macs:,} MACs per 1-s window; batch 1, one thread, {args.runs} interleaved runs; "
                  "ms are CPU time of the calling thread unless 'wall'")
            print(f"{'variant':<24} {'file bytes':>10} {'x fp32':>6}  {'weight bytes per dtype':<42} {'p50 ms':>7} {'p99 ms':>7} "
                  f"{'wall p50':>8} {'x fp32':>6} {'GEMM %':>6} {'QConv':>5} {'Trans':>5}")
            for label, t in times.items():
                path = files.get(label)
                size = f"{path.stat().st_size:>10,} {path.stat().st_size / fp32_bytes:>6.2f}" if path else f"{'-':>10} {'-':>6}"
                weights = ", ".join(f"{k} {v:,}" for k, v in sorted(stored_bytes(path).items())) if path else "-"
                share = 2 * macs / (t.cpu_p50 / 1000) / 1e9 / gflops
                ops = optimized_op_counts(path, path.parent) if path else {}
                fused = f"{ops.get('QLinearConv', 0):>5} {ops.get('Transpose', 0):>5}" if path else f"{'-':>5} {'-':>5}"
                print(f"{label:<24} {size}  {weights:<42} {t.cpu_p50:>7.3f} {np.percentile(t.cpu_ms, 99):>7.3f} {t.wall_p50:>8.3f} "
                      f"{t.cpu_p50 / fp32_ms:>6.2f} {share:>6.1%} {fused}")


if __name__ == "__main__":
    main()
