"""`earmark convert --from beats|atst-clip|atst-frame|asit|ssast|ast SRC OUT`."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="fmt", required=True, help="beats, atst-clip, atst-frame, asit, ssast or ast")
    parser.add_argument("src", help="the official checkpoint file (.pt / .ckpt / .pth)")
    parser.add_argument("out", help="the earmark checkpoint folder to write")
    parser.add_argument("--sample-rate", type=int, default=32000, choices=[16000, 32000],
                        help="ASiT only: its released code uses 32 kHz, its paper 16 kHz (default 32000)")
    parser.add_argument("--labels", help="a text file with one class name per line (AST's AudioSet heads carry none)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from earmark.teachers.convert import convert

    labels = Path(args.labels).read_text().split("\n") if args.labels else None
    path, mapped = convert(args.fmt, args.src, args.out, args.sample_rate, [l for l in labels or [] if l])
    print(f"wrote {path}: {mapped.name} {mapped.overrides}, {len(mapped.state)} tensors"
          f"{f', head for {len(mapped.labels)} classes' if mapped.head else ''}"
          f"{f'; not needed by the teacher and dropped: {len(mapped.dropped)} keys (e.g. {mapped.dropped[:3]})' if mapped.dropped else ''}")
    print(f"next: earmark finetune {path} --data MANIFEST")
    return 0
