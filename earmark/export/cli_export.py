"""`earmark export CKPT --format onnx|engine [--fp16] [--int8 [--calib MANIFEST] [--int8-scope S]]` and `--check tensorrt MODEL.onnx`."""

from __future__ import annotations

import argparse
from pathlib import Path

from earmark.audio.options import PROBABILITY

FORMATS = ("onnx", "engine")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an earmark checkpoint folder (or, with --check, an .onnx file)")
    parser.add_argument("--format", default="onnx", help="onnx (default) or engine (TensorRT, built on the target GPU)")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="half-precision weights and activations")
    precision.add_argument("--int8", action="store_true", help="symmetric INT8 Q/DQ (from a QAT checkpoint, or PTQ with --calib)")
    parser.add_argument("--calib", help="manifest (or WebDataset shards) of calibration clips for post-training INT8 (its labels give accuracy)")
    parser.add_argument("--int8-scope", choices=["pointwise", "all", "integer"],
                        help="post-training INT8: quantize pointwise convs only (default; CPU targets), all convs (TensorRT, NPUs) "
                             "or the 1x1 convs, adds and concats in integer with u8 activations (integer; about fp32's speed: docs/export.md)")
    parser.add_argument("--min-agreement", type=PROBABILITY, help="INT8 parity gate: least top-1 agreement with PyTorch (default 0.95)")
    parser.add_argument("--batch", default="1", help="fixed batch size N, or 'dynamic' (default 1)")
    parser.add_argument("--out", help="output path (default: next to the checkpoint, named by precision)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument("--check", choices=["tensorrt"], help="only list what TensorRT's ONNX parser would refuse in MODEL.onnx")


def _batch(value: str) -> int | None:
    if value == "dynamic":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"--batch {value!r} is neither a positive integer nor 'dynamic'; use e.g. --batch 1 or --batch dynamic.")
    return int(value)


def default_output(checkpoint: Path, precision: str) -> Path:
    """Beside the checkpoint: a QAT folder ``student-int8/`` gives ``student-int8.onnx``; PTQ gives ``student-ptq-int8.onnx``."""
    from earmark.engine.checkpoint import read_meta

    if checkpoint.is_dir() and read_meta(checkpoint).quantized:
        return checkpoint.with_name(f"{checkpoint.name}.onnx")
    return checkpoint.with_name(f"{checkpoint.name}-{'ptq-int8' if precision == 'int8' else precision}.onnx")


def _grouped(findings: list) -> dict[str, list[str]]:
    """problem -> the nodes that have it, each problem once however many nodes share it."""
    nodes: dict[str, list[str]] = {}
    for finding in findings:
        nodes.setdefault(finding.problem, []).append(finding.node)
    return nodes


def run(args: argparse.Namespace) -> int:
    from earmark.export.tensorrt import build_engine, check_tensorrt
    from earmark.export.timing import describe_cpu

    if args.check:
        findings = check_tensorrt(args.model)
        for problem, nodes in _grouped(findings).items():
            print(f"refused: {problem} ({len(nodes)} node{'s' if len(nodes) > 1 else ''}: {', '.join(nodes[:3])}{', ...' if len(nodes) > 3 else ''})")
        for fix in dict.fromkeys(f.fix for f in findings if f.fix):
            print(f"to fix: {fix}")
        print(f"{args.model}: {'TensorRT would refuse it (' + str(len(findings)) + ' findings)' if findings else 'nothing TensorRT would refuse'}")
        return 1 if findings else 0
    if args.format not in FORMATS:
        raise ValueError(f"unknown format {args.format!r}; use --format onnx or --format engine.")
    from earmark.export import export_onnx

    precision = "fp16" if args.fp16 else "int8" if args.int8 else "fp32"
    out = Path(args.out) if args.out else default_output(Path(args.model), precision)
    result = export_onnx(args.model, out, precision, calib=args.calib, batch=_batch(args.batch), force=args.force,
                         int8_scope=args.int8_scope, min_agreement=args.min_agreement)
    scope = result.metadata.quantization.get("scope")
    rows = [(str(result.path), f"{result.bytes:,}", result.precision + (f" ({scope})" if scope else ""), str(result.opset),
             "; ".join(map(str, result.gates[1:])), f"{result.latency.cpu_p50:.2f}", f"{result.latency.wall_p50:.2f}")]
    if args.format == "engine":
        engine = build_engine(result.path, fp16=args.fp16)
        rows.append((str(engine), f"{engine.stat().st_size:,}", result.precision, "-", "-", "-", "-"))
    _print_table(("file", "bytes", "precision", "opset", "parity gates", "ORT CPU ms", "wall ms"), rows)
    print(f"ONNX Runtime, one thread, batch {args.batch}: median of 30 calls; {describe_cpu()}")
    if result.accuracy:
        print(f"accuracy on the calibration set: exported {result.accuracy['exported']:.1%}, PyTorch fp32 {result.accuracy['pytorch_fp32']:.1%}")
    print(f"\nnext: earmark listen {result.path} --source mic")
    return 0


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for i, row in enumerate((header, *rows)):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
