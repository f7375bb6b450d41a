"""`earmark distill --teacher CKPT_OR_CACHE --student tfsepnet64 --data MANIFEST [--qat]`."""

from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser) -> None:
    from earmark.engine.trainer import default_workers

    parser.add_argument("--teacher", action="append", default=[], help="teacher checkpoint (repeat for an ensemble) or a cache folder")
    parser.add_argument("--student", default="tfsepnet64", help="a registered student (see `earmark complexity --list`)")
    parser.add_argument("--student-overrides", default="{}", help="JSON constructor arguments, e.g. '{\"base_channels\": 32}'")
    parser.add_argument("--data", required=True, help="a labelled manifest (folds from its fold column, else from a hash of the ids) or its WebDataset shards")
    parser.add_argument("--workers", type=int, default=default_workers(), help="DataLoader workers decoding audio (default: from the CPU count)")
    parser.add_argument("--task", default="clip", choices=["clip", "frame"], help="frame: an SED student on strong labels, frame KD")
    parser.add_argument("--out", default="runs/distill")
    parser.add_argument("--cache", default="", help="where the teacher-output cache lives (default OUT/teacher-cache)")
    parser.add_argument("--no-kd", action="store_true", help="train on hard labels only (a baseline)")
    parser.add_argument("--online-teacher", action="store_true", help="run the teachers on every augmented batch instead of the cache")
    parser.add_argument("--qat", action="store_true", help="NNCF quantization-aware training after the float run")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--qat-epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--kd-lambda", type=float, default=0.02, help="weight of the hard-label loss")
    parser.add_argument("--kl-reduction", default="mean", choices=["mean", "batchmean"])
    parser.add_argument("--feature-weight", type=float, default=0.0,
                        help="> 0 adds MSE from the student's projected embedding to the teacher's (ACM-SSKD eqs. 11-13)")
    parser.add_argument("--mixup", type=float, default=0.3)
    parser.add_argument("--dir-folder", default="", help="impulse responses for device simulation")
    parser.add_argument("--roll-seconds", type=float, default=0.0)
    parser.add_argument("--clip-seconds", type=float, default=1.0)
    parser.add_argument("--val-fold", type=int, default=4)
    parser.add_argument("--test-fold", type=int, default=5)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from earmark.distill.run import DistillConfig, distill

    if not args.teacher and not args.no_kd:
        raise ValueError("pass --teacher CHECKPOINT (or a cache folder), or --no-kd for a hard-label baseline.")
    final = distill(DistillConfig(
        data=args.data, out=args.out, teachers=args.teacher, student=args.student, task=args.task, student_overrides=json.loads(args.student_overrides),
        cache=args.cache, clip_seconds=args.clip_seconds, val_fold=args.val_fold, test_fold=args.test_fold, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, temperature=args.temperature, hard_weight=args.kd_lambda,
        kl_reduction=args.kl_reduction, feature_weight=args.feature_weight, mixup_alpha=args.mixup, dir_folder=args.dir_folder, roll_seconds=args.roll_seconds,
        kd=not args.no_kd, online_teacher=args.online_teacher, qat=args.qat, qat_epochs=args.qat_epochs, seed=args.seed, precision=args.precision,
        workers=args.workers))
    print(f"wrote {final}; results in {args.out}/results.json, curves and confusion matrix in {args.out}")
    print(f"next: earmark export {final} --format onnx{'' if args.qat else ' --int8 --calib ' + args.data}")
    return 0
