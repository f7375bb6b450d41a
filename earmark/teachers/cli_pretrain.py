"""`earmark pretrain RECIPE --data MANIFEST_OR_SHARDS`: self-supervised teacher pretraining; run it under torchrun for many GPUs."""

from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser) -> None:
    from earmark.engine.trainer import default_workers

    parser.add_argument("recipe", help="acmsskd, asit, atst-clip, atst-frame, beats (iteration 1) or beats-iter (iterations >= 2)")
    parser.add_argument("--data", required=True, help="a manifest of audio, or WebDataset shards (a folder, a brace pattern, a .txt list); labels are ignored")
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
    parser.add_argument("--workers", type=int, default=default_workers(), help="DataLoader workers decoding audio, per process (default: from the CPU count)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    parser.add_argument("--init", default="", help="a teacher checkpoint folder to start from instead of random weights")
    a1 = parser.add_argument_group("ACM-SSKD Algorithm A1 (iterate pretraining and distillation)")
    a1.add_argument("--iterations", type=int, default=0, help="K > 0 runs K rounds of acmsskd pretraining + KD, learning rates -20%% each")
    a1.add_argument("--kd-data", default="", help="the labelled manifest for the KD stage")
    a1.add_argument("--kd-cache", default="", help="teacher outputs on --kd-data (`earmark predict TEACHER --data KD_DATA --out CACHE`)")
    a1.add_argument("--kd-gamma", type=float, default=1.0, help="weight of the logit MSE in the KD loss (eq. 13)")
    a1.add_argument("--kd-epochs", type=int, default=10)
    a1.add_argument("--kd-lr", type=float, default=1e-4)
    a1.add_argument("--kd-clip-seconds", type=float, default=1.0)


def run(args: argparse.Namespace) -> int:
    from earmark.engine import cleanup, setup_distributed
    from earmark.teachers.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(args.recipe, args.data, args.out, args.teacher, json.loads(args.overrides),
                            json.loads(args.recipe_args), init=args.init, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                            clip_seconds=args.clip_seconds, precision=args.precision, grad_accum=args.grad_accum,
                            ckpt_every=args.ckpt_every, workers=args.workers)
    if args.iterations:
        from earmark.teachers.finetune import FinetuneConfig
        from earmark.teachers.iterate import acmsskd_iterations

        if not args.kd_data:
            raise ValueError("--iterations needs the labelled data of the KD stage: pass --kd-data MANIFEST.")
        kd = FinetuneConfig("", args.kd_data, "", clip_seconds=args.kd_clip_seconds, epochs=args.kd_epochs, lr=args.kd_lr,
                            batch_size=args.batch_size, precision=args.precision, kd_cache=args.kd_cache, kd_gamma=args.kd_gamma,
                            workers=args.workers)
        path = acmsskd_iterations(config, kd, args.iterations)
        next_step = f"earmark distill --teacher {path} --student tfsepnet64 --data {args.kd_data} --qat"
    else:
        path = pretrain(config, resume=args.resume)
        next_step = f"earmark finetune {path} --data MANIFEST"
    if setup_distributed().is_main:
        print(f"wrote {path}\nnext: {next_step}")
    cleanup()
    return 0
