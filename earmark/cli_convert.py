"""`earmark convert --from FORMAT SRC OUT`: an official checkpoint into an earmark checkpoint.

Teacher formats come from the teacher families' registrations, student formats from the students' converters;
this verb sits beside cli.py because it dispatches to both stages, which never import each other.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _formats() -> dict[str, str]:
    from earmark.students.convert import CONVERTERS
    from earmark.teachers.registry import converters

    return {**{fmt: c.summary for fmt, c in converters().items()}, **{fmt: c[2] for fmt, c in CONVERTERS.items()}}


def configure(parser: argparse.ArgumentParser) -> None:
    formats = _formats()
    parser.add_argument("--from", dest="fmt", required=True, choices=sorted(formats),
                        help="; ".join(f"{fmt}: {summary}" for fmt, summary in sorted(formats.items())))
    parser.add_argument("src", help="the official checkpoint file (.pt / .ckpt / .pth)")
    parser.add_argument("out", help="the earmark checkpoint folder to write")
    parser.add_argument("--sample-rate", type=int, default=32000, choices=[16000, 32000],
                        help="ASiT only: its released code uses 32 kHz, its paper 16 kHz (default 32000)")
    parser.add_argument("--labels", help="a text file with one class name per line (AST's AudioSet heads carry none)")


def run(args: argparse.Namespace) -> int:
    from earmark.students.convert import CONVERTERS
    from earmark.teachers.convert import convert
    from earmark.teachers.registry import converters

    labels = [line for line in Path(args.labels).read_text().split("\n") if line] if args.labels else None
    if args.fmt in CONVERTERS:
        teachers = {fmt: c.looks_like for fmt, c in converters().items()}
        path, name, dropped = CONVERTERS[args.fmt][0](args.src, args.out, labels, looks_like=teachers)
        print(f"wrote {path}: student {name}{f'; not part of the model and dropped: {len(dropped)} keys' if dropped else ''}")
        print(f"next: earmark complexity {path}   or   earmark export {path}")
        return 0
    students = {fmt: c[1] for fmt, c in CONVERTERS.items()}
    path, mapped = convert(args.fmt, args.src, args.out, args.sample_rate, labels, looks_like=students)
    print(f"wrote {path}: {mapped.name} {mapped.overrides}, {len(mapped.state)} tensors"
          f"{f', head for {len(mapped.labels)} classes' if mapped.head else ''}"
          f"{f'; not needed by the teacher and dropped: {len(mapped.dropped)} keys (e.g. {mapped.dropped[:3]})' if mapped.dropped else ''}")
    if mapped.task == "frame":  # a frame teacher with its own strong heads teaches as it is, on data with its labels
        print(f"next: earmark distill --teacher {path} --data MANIFEST --task frame --objective detect --online-teacher "
              f"(MANIFEST labelled with its classes)   or   earmark predict {path} --data MANIFEST --out CACHE")
    else:
        print(f"next: earmark finetune {path} --data MANIFEST")
    return 0
