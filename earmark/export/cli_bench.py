"""`earmark bench MODEL...`: p50/p99 latency, throughput and memory per backend, printed and saved as JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from earmark.audio.options import AT_LEAST_ONE


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", help=".onnx files and/or earmark checkpoint folders (PyTorch eager)")
    parser.add_argument("--batch", type=AT_LEAST_ONE, default=8, help="batch size for the throughput rows (dynamic-batch models)")
    parser.add_argument("--runs", type=AT_LEAST_ONE, default=50, help="timed runs per configuration")
    parser.add_argument("--json", default="bench.json", help="where to write the figures")


def run(args: argparse.Namespace) -> int:
    from earmark.export.benchmark import bench_onnx, bench_torch, format_table, frontend_cost_ms, read_metadata, write_json

    rows, frontend = [], {}
    for model in args.models:
        path = Path(model)
        if path.is_dir():
            rows += bench_torch(path, args.batch, args.runs)
        elif path.suffix == ".onnx" and path.is_file():
            rows += bench_onnx(path, args.batch, args.runs)
            meta = read_metadata(path)
            frontend.setdefault(meta.frontend.name, frontend_cost_ms(meta))
        else:
            raise ValueError(f"{model}: not an .onnx file or a checkpoint folder; pass what `earmark export` or `earmark distill` wrote.")
    print(format_table(rows))
    for name, ms in frontend.items():
        print(f"frontend {name}: {ms:.2f} CPU ms per second of audio (numpy, BLAS pinned to one thread)")
    write_json(rows, frontend, args.json)
    print(f"figures written to {args.json}")
    return 0
