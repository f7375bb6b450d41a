"""Which of several ONNX files runs faster on this machine: each file's CPU time per call (the calling thread's, which
a busy machine does not inflate) and wall time, the calls interleaved in a shuffled order on every turn, as a ratio of
CPU p50 to the first file's; with ``--profile``, where each file's time goes by op type (ONNX Runtime's own profiler,
kernel time per run; named convs split into 1x1, depthwise and other spatial ones, read from the graph ONNX Runtime
optimized; the convs it fuses and leaves unnamed, such as FusedConv, by op type only).

    python bench/bench_onnx_latency.py REFERENCE.onnx OTHER.onnx... [--runs 300] [--profile]

ONNX Runtime sessions only, as the runtime opens them (earmark.export.benchmark.session: one intra-op thread,
spinning off); one random batch of 1 shaped as the first file's input, the same for every file.
"""

import argparse
import json
import os
import tempfile
from collections import defaultdict

import numpy as np
import onnx

from earmark.export.benchmark import session
from earmark.export.timing import describe_cpu, interleaved


def conv_kind(node: onnx.NodeProto) -> str:
    """A conv node's op type and kind (1x1, depthwise or spatial), the unit the INT8 kernels differ by."""
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attributes.get("group", 1) > 1:
        return f"{node.op_type} depthwise"
    return f"{node.op_type} {'1x1' if all(k == 1 for k in attributes.get('kernel_shape', [1])) else 'spatial'}"


def kernel_ms_by_op(path: str, feed: dict[str, np.ndarray], runs: int) -> dict[str, float]:
    """Milliseconds per run that ONNX Runtime's profiler records for each op type's kernels, convs split by kind (the
    first run, which packs weights and allocates, is left out)."""
    with tempfile.TemporaryDirectory() as tmp:
        optimized = os.path.join(tmp, "optimized.onnx")
        profiled = session(path, profile_prefix=os.path.join(tmp, "profile"), optimized_path=optimized)
        for _ in range(runs + 1):
            profiled.run(None, feed)
        events = json.loads(open(profiled.end_profiling()).read())
        kinds = {n.name: conv_kind(n) for n in onnx.load(optimized).graph.node if "Conv" in n.op_type}
    second_run = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")[1]
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= second_run:
            node = event["name"].removesuffix("_kernel_time")
            totals[kinds.get(node, event["args"]["op_name"])] += event["dur"] / 1000 / runs
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="ONNX files taking the same input; ratios are to the first")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="also each file's kernel time by op type (convs by kind)")
    args = parser.parse_args()
    sessions = {path: session(path) for path in args.files}
    first = sessions[args.files[0]].get_inputs()[0]
    shape = [dim if isinstance(dim, int) else 1 for dim in first.shape]
    feed = {first.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    times = interleaved({path: (lambda s=s: s.run(None, feed)) for path, s in sessions.items()}, args.runs)
    reference = times[args.files[0]].cpu_p50
    print(f"{args.runs} interleaved runs, batch 1 of {shape}, one ONNX Runtime thread; {describe_cpu()}")
    print(f"{'file':<48} {'bytes':>9} {'CPU p50':>8} {'CPU p90':>8} {'wall p50':>8} {'x first':>8}")
    for path, t in times.items():
        print(f"{path:<48} {os.path.getsize(path):>9,} {t.cpu_p50:>8.3f} {np.percentile(t.cpu_ms, 90):>8.3f} {t.wall_p50:>8.3f} "
              f"{t.cpu_p50 / reference:>8.3f}")
    if args.profile:
        for path in args.files:
            by_op = kernel_ms_by_op(path, feed, args.runs)
            total = sum(by_op.values())
            print(f"\n{path}: kernel time {total:.3f} ms per run")
            for op, ms in by_op.items():
                print(f"  {op:<28} {ms:>7.3f} ms {ms / total:>6.1%}")


if __name__ == "__main__":
    main()
