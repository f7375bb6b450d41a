"""`earmark pretrain RECIPE --data MANIFEST`: self-supervised teacher pretraining; run it under torchrun for many GPUs."""

from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="acmsskd, asit, atst-clip, atst-frame, beats (iteration 1) or beats-iter (iterations >= 2)")
    parser.add_argument("--data", required=True, help="a manifest of audio (labels are ignored)")
    parser.add_argument("--out", default="runs/pretrain")
    parser.add_argument("--teacher", default="", help="registry name, e.g. atst_frame_small (default: the recipe's base size)")
    parser.add_argument("--overrides", default="{}", help="JSON constructor arguments, e.g. '{\"depth\": 4}'")
    parser.add_argument("--recipe-args", default="{}", help="JSON recipe options, e.g. '{\"previous\": \"runs/it1/teacher\"}' for beats-iter")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--ckpt-every", type=int, default=100)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")


def run(args: argparse.Namespace) -> int:
    from earmark.engine import cleanup, setup_distributed
    from earmark.teachers.pretrain import PretrainConfig, pretrain

    path = pretrain(PretrainConfig(args.recipe, args.data, args.out, args.teacher, json.loads(args.overrides),
                                   json.loads(args.recipe_args), steps=args.steps,
                                   batch_size=args.batch_size, lr=args.lr, clip_seconds=args.clip_seconds, precision=args.precision,
                                   grad_accum=args.grad_accum, ckpt_every=args.ckpt_every), resume=args.resume)
    if setup_distributed().is_main:
        print(f"wrote {path}\nnext: earmark finetune {path} --data MANIFEST")
    cleanup()
    return 0
