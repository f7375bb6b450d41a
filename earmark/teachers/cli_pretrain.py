"""`earmark pretrain RECIPE --data MANIFEST_OR_SHARDS`: self-supervised teacher pretraining; run it under torchrun for many GPUs."""

from __future__ import annotations

import argparse
import logging

from earmark.audio.options import NON_NEGATIVE

log = logging.getLogger(__name__)

HELP = {
    "recipe": "acmsskd, asit, atst-clip, atst-frame, beats (iteration 1) or beats-iter (iterations >= 2)",
    "data": "a manifest of audio, or WebDataset shards (a folder, a brace pattern, a .txt list); labels are ignored",
    "out": "the run folder (teacher checkpoint, config.json, curves)",
    "teacher": "registry name, e.g. atst_frame_small (default: the recipe's base size)",
    "overrides": "JSON constructor arguments, e.g. '{\"depth\": 4}'",
    "recipe_args": "JSON recipe options, e.g. '{\"previous\": \"runs/it1/teacher\"}' for beats-iter",
    "init": "a teacher checkpoint folder to start from instead of random weights",
    "steps": "optimiser steps",
    "batch_size": None,
    "lr": "peak learning rate",
    "weight_decay": "AdamW weight decay",
    "warmup_steps": "linear warm-up steps",
    "clip_seconds": None,
    "precision": None,
    "workers": None,
    "skip_bad": None,
    "grad_accum": "batches accumulated per optimiser step",
    "ckpt_every": "steps between resumable state files",
    "seed": None,
}
KD_HELP = {  # the KD stage of Algorithm A1 is a fine-tuning run; its options carry a kd- prefix
    "data": "the labelled manifest for the KD stage",
    "kd_cache": "teacher outputs on --kd-data (`earmark predict TEACHER --data KD_DATA --out CACHE`)",
    "kd_gamma": "weight of the logit MSE in the KD loss (eq. 13)",
    "epochs": "KD epochs per iteration",
    "lr": "KD learning rate (-20% per iteration)",
    "clip_seconds": "the crop of the KD stage",
}


def configure(parser: argparse.ArgumentParser) -> None:
    from earmark.engine import add_config_options
    from earmark.engine.trainer import default_workers
    from earmark.teachers.finetune import FinetuneConfig
    from earmark.teachers.pretrain import PretrainConfig

    add_config_options(parser, PretrainConfig, HELP, positional=("recipe",), choices={"precision": ["fp32", "bf16", "fp16"]})
    parser.set_defaults(workers=default_workers())  # this machine's, also when a config.json from another is repeated
    parser.add_argument("--force", action="store_true", help="start over when --out holds another run (otherwise it is refused)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    a1 = parser.add_argument_group("ACM-SSKD Algorithm A1 (iterate pretraining and distillation)")
    a1.add_argument("--iterations", type=NON_NEGATIVE, default=0, help="K > 0 runs K rounds of acmsskd pretraining + KD, learning rates -20%% each")
    add_config_options(a1, FinetuneConfig, KD_HELP, rename={"kd_cache": "--kd-cache", "kd_gamma": "--kd-gamma"}, config_option=False,
                       prefix="kd_")


def cpu_size_warning(name: str, overrides: dict) -> str | None:
    """On a machine without CUDA, a sentence naming a base-size teacher's size and the tiny variant to try instead."""
    import torch

    from earmark.teachers.registry import create_teacher, list_teachers

    if torch.cuda.is_available() or name not in list_teachers() or name.endswith(("_tiny", "_small")):
        return None
    with torch.device("meta"):  # counts parameters without allocating them
        params = sum(p.numel() for p in create_teacher(name, **overrides).parameters())
    if params < 20_000_000:
        return None
    family = name.rsplit("_", 1)[0]
    smaller = next((f"{family}_{size}" for size in ("tiny", "small") if f"{family}_{size}" in list_teachers()), None)
    return (f"{name} has {params / 1e6:.1f} M parameters and this machine has no CUDA GPU: each step will take seconds to "
            f"minutes on the CPU{f'; for a CPU-sized run pass --teacher {smaller}' if smaller else ''}.")


def run(args: argparse.Namespace) -> int:
    from earmark.engine import cleanup, config_from_args, setup_distributed
    from earmark.teachers.pretrain import PretrainConfig, pretrain
    from earmark.teachers.pretrain.run import DEFAULT_TEACHER

    config = config_from_args(PretrainConfig, args, progress=not args.quiet)
    if args.iterations and not getattr(args, "kd_data", None):
        raise ValueError("--iterations needs the labelled data of the KD stage: pass --kd-data MANIFEST.")
    if not config.init and (warning := cpu_size_warning(config.teacher or DEFAULT_TEACHER.get(config.recipe, ""), dict(config.overrides))):
        log.warning(warning)
    if args.iterations:
        from earmark.teachers.finetune import FinetuneConfig
        from earmark.teachers.iterate import acmsskd_iterations

        kd = config_from_args(FinetuneConfig, args, prefix="kd_", teacher="", out="", batch_size=config.batch_size,
                              precision=config.precision, progress=config.progress, workers=config.workers,
                              skip_bad=config.skip_bad)
        path = acmsskd_iterations(config, kd, args.iterations)
        next_step = f"earmark distill --teacher {path} --student tfsepnet64 --data {kd.data} --qat"
    else:
        path = pretrain(config, resume=args.resume, force=args.force)
        next_step = f"earmark finetune {path} --data MANIFEST --out runs/finetune"
    if setup_distributed().is_main:
        print(f"wrote {path}\nnext: {next_step}")
    cleanup()
    return 0
