"""`earmark predict TEACHER... --data DATA --out CACHE`: the teacher-output cache (several teachers: an ensemble); torchrun splits it.

A teacher is any earmark checkpoint, a fine-tuned teacher or a student, as for `earmark distill --teacher`; this verb sits
beside cli.py because it loads models of both stages.
"""

from __future__ import annotations

import argparse

from earmark.audio.options import AT_LEAST_ONE, NON_NEGATIVE, SECONDS


def configure(parser: argparse.ArgumentParser) -> None:
    from earmark.engine.trainer import default_workers

    parser.add_argument("teachers", nargs="+", help="fine-tuned teacher or student checkpoint folders (logits are averaged)")
    parser.add_argument("--data", required=True, help="a manifest, or WebDataset shards (a folder, shards/{000000..000099}.tar, a .txt list)")
    parser.add_argument("--out", required=True, help="the cache folder to write (a rerun continues a killed one)")
    parser.add_argument("--clip-seconds", type=SECONDS, default=1.0, help="the crop the student will see")
    parser.add_argument("--batch-size", type=AT_LEAST_ONE, default=32, help="clips per forward pass")
    parser.add_argument("--embeddings", action="store_true", help="also store clip embeddings (feature distillation)")
    parser.add_argument("--workers", type=NON_NEGATIVE, default=default_workers(), help="DataLoader workers decoding audio (default: from the CPU count)")
    parser.add_argument("--skip-bad", action="store_true", help="decode every file first and leave out those that are empty, "
                        "undecodable or hold NaN/inf samples, each named (distill then needs --skip-bad too)")
    parser.add_argument("--part-clips", type=AT_LEAST_ONE, default=1000, help="clips per cache part (each part is written when complete)")


def run(args: argparse.Namespace) -> int:
    from earmark.audio.sources import open_data
    from earmark.engine import cleanup, setup_distributed
    from earmark.distill import load_teacher
    from earmark.teachers.cache import check_labels
    from earmark.teachers.predict import predict_to_cache

    data = open_data(args.data, skip_bad=args.skip_bad)
    predictors = []
    for path in args.teachers:
        predictor, labels = load_teacher(path)
        check_labels(labels, data, path)
        predictors.append(predictor)
    out = predict_to_cache(predictors, data, args.out, args.clip_seconds, args.batch_size, embeddings=args.embeddings,
                           workers=args.workers, part_clips=args.part_clips)
    if setup_distributed().is_main:
        print(f"wrote the teacher-output cache {out} for {len(data)} clips")
    cleanup()
    return 0
