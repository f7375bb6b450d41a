"""`earmark finetune TEACHER --data MANIFEST`: heads, frozen or full backbone, mixup and SpecAugment, best on validation."""

from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser) -> None:
    from earmark.engine.trainer import default_workers

    parser.add_argument("teacher", help="a teacher checkpoint folder (from `earmark convert` or `earmark pretrain`) or a registry name")
    parser.add_argument("--data", required=True, help="a labelled manifest with folds (ESC-50 style CSV, ...) or its WebDataset shards")
    parser.add_argument("--workers", type=int, default=default_workers(), help="DataLoader workers decoding audio (default: from the CPU count)")
    parser.add_argument("--out", default="runs/finetune")
    parser.add_argument("--head", default="linear", help="linear, cls, cls_norm, prenorm, postnorm or doublenorm (Hao et al.)")
    parser.add_argument("--freeze", action="store_true", help="train the head only")
    parser.add_argument("--task", default="clip", choices=["clip", "frame"], help="frame: strong labels, a frame head, frame F1")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--clip-seconds", type=float, default=1.0)
    parser.add_argument("--val-fold", type=int, default=4)
    parser.add_argument("--test-fold", type=int, default=5)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--overrides", default="{}", help="JSON constructor arguments for a registry name, e.g. '{\"depth\": 4}'")
    parser.add_argument("--kd-cache", default="", help="a teacher-output cache (`earmark predict`): train on ACM-SSKD's KD loss against it")
    parser.add_argument("--kd-gamma", type=float, default=1.0, help="weight of the logit MSE in the KD loss (eq. 13)")


def run(args: argparse.Namespace) -> int:
    from earmark.teachers.finetune import FinetuneConfig, finetune

    path = finetune(FinetuneConfig(args.teacher, args.data, args.out, json.loads(args.overrides), args.head, args.task, args.freeze,
                                   args.clip_seconds, args.val_fold, args.test_fold, args.epochs, args.batch_size, args.lr,
                                   precision=args.precision, kd_cache=args.kd_cache, kd_gamma=args.kd_gamma,
                                   workers=args.workers))
    print(f"wrote {path}; test results in {args.out}/results.json")
    print(f"next: earmark distill --teacher {path} --student tfsepnet64 --data {args.data} --qat")
    return 0
