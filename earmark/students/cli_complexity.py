"""`earmark complexity NAME_OR_CHECKPOINT_OR_ONNX`: parameters, MACs and bytes against the DCASE limits."""

from __future__ import annotations

import argparse
from pathlib import Path

from earmark.audio.options import AT_LEAST_ONE


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="a registered student name, a student checkpoint folder, or an exported .onnx "
                                                 "(bytes actually stored per dtype)")
    parser.add_argument("--classes", type=AT_LEAST_ONE, default=10, help="classes for a registered name (default 10, as TAU22)")
    parser.add_argument("--list", action="store_true", help="list the registered students")


def run(args: argparse.Namespace) -> int:
    from earmark.engine import load_model
    from earmark.students import (build_student, count, create_student, format_onnx_report, format_report, list_students,
                                  one_second_input)

    if args.model and args.model.endswith(".onnx"):
        if not Path(args.model).is_file():
            raise ValueError(f"{args.model}: no such file; export one with `earmark export CHECKPOINT`.")
        print(format_onnx_report(args.model))
        return 0
    if args.list or not args.model:
        for name, summary in list_students().items():
            print(f"{name:<18} {summary}")
        return 0
    if Path(args.model).is_dir():
        model, meta = load_model(args.model, "student")
        if meta.quantized:  # DCASE counts the float model; NNCF's fake quantizers are no part of it
            model = build_student(meta)
        name = f"{meta.model} ({args.model})"
    else:
        model, name = create_student(args.model, args.classes), args.model
    print(format_report(name, count(model, *one_second_input(model))))
    return 0
