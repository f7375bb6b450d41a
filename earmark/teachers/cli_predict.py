"""`earmark predict TEACHER... --data MANIFEST --out CACHE`: the teacher-output cache (several teachers: an ensemble)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("teachers", nargs="+", help="fine-tuned teacher checkpoint folders (logits are averaged)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, help="the cache folder to write")
    parser.add_argument("--clip-seconds", type=float, default=1.0, help="the crop the student will see")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--embeddings", action="store_true", help="also store clip embeddings (feature distillation)")


def run(args: argparse.Namespace) -> int:
    from earmark.audio.manifest import read_manifest
    from earmark.engine.checkpoint import checkpoint_hash
    from earmark.teachers.checkpoint import teacher_from_checkpoint
    from earmark.teachers.predict import Predictor, predict_to_cache

    manifest = read_manifest(args.data)
    predictors = []
    for path in args.teachers:
        model, meta = teacher_from_checkpoint(path)
        if meta.labels != manifest.labels.to_list():
            raise ValueError(f"{path} predicts {meta.labels[:5]}... but {args.data} has {manifest.labels.to_list()[:5]}...; fine-tune it on this label set.")
        predictors.append(Predictor(model, model.frontend, checkpoint_hash(path)))
    out = predict_to_cache(predictors, manifest, args.out, args.clip_seconds, args.batch_size, embeddings=args.embeddings)
    print(f"wrote the teacher-output cache {out} for {len(manifest)} clips")
    return 0
