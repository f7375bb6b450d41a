"""`earmark finetune TEACHER --data MANIFEST`: heads, frozen or full backbone, mixup and SpecAugment, best on validation."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from earmark.teachers.finetune import FinetuneConfig

log = logging.getLogger(__name__)

HELP = {
    "teacher": "a teacher checkpoint folder (from `earmark convert` or `earmark pretrain`) or a registry name",
    "data": "a labelled manifest with folds (ESC-50 style CSV, DESED style TSV, ...) or its WebDataset shards",
    "out": "the run folder (checkpoint, config.json, results.json, curves)",
    "head": "linear, cls, cls_norm, prenorm, postnorm or doublenorm (Hao et al.)",
    "freeze": "train the head only",
    "task": "frame: strong labels, a frame head, frame F1",
    "overrides": "JSON constructor arguments for a registry name, e.g. '{\"depth\": 4}'",
    "epochs": "passes over the training folds",
    "batch_size": None,
    "lr": "peak learning rate of the backbone",
    "head_lr_scale": "the head's learning rate as a multiple of --lr",
    "weight_decay": "AdamW weight decay",
    "warmup_epochs": "linear warm-up before the schedule",
    "schedule": "learning-rate schedule after warm-up",
    "mixup_alpha": "Beta(a, a) mixup of waveforms and targets; 0 turns it off",
    "objective": "detect: a sigmoid per class, BCE (events); classify: a softmax (scenes) "
                 "(default: detect for multi-label or strong labels, else classify)",
    "backgrounds": "a folder or manifest of background recordings: every epoch trains on new mixtures of the clips over them "
                   "(--objective detect)",
    "mix_snr": "event-to-background dB range (LOW HIGH) of those mixtures",
    "source_chain": "a recording-chain stage each training event may pass through before it is mixed, with probability 0.5 "
                    "(repeat: bandlimit, eq, reverb): a detector for sounds from sources it never heard (docs/distill.md)",
    "freq_mask": "SpecAugment: widest masked band of mel bins",
    "time_mask": "SpecAugment: widest masked band of frames",
    "clip_seconds": None,
    "val_fold": None,
    "test_fold": None,
    "precision": None,
    "workers": None,
    "skip_bad": None,
    "seed": None,
    "kd_cache": "a teacher-output cache (`earmark predict`): train on ACM-SSKD's KD loss against it",
    "kd_gamma": "weight of the logit MSE in the KD loss (eq. 13)",
}


def configure(parser: argparse.ArgumentParser) -> None:
    from earmark.audio.chain import STAGES
    from earmark.engine import SCHEDULES, add_config_options
    from earmark.engine.trainer import default_workers
    from earmark.teachers.finetune import FinetuneConfig

    add_config_options(parser, FinetuneConfig, HELP, positional=("teacher",),
                       choices={"source_chain": list(STAGES), "task": ["clip", "frame"], "precision": ["fp32", "bf16", "fp16"], "schedule": SCHEDULES,
                                "objective": ["detect", "classify"]})
    parser.set_defaults(workers=default_workers())  # this machine's, also when a config.json from another is repeated
    parser.add_argument("--force", action="store_true", help="start over when --out holds another run (otherwise it is refused)")


def run(args: argparse.Namespace) -> int:
    from earmark.engine import config_from_args, results_table
    from earmark.teachers.cli_pretrain import cpu_size_warning
    from earmark.teachers.finetune import FinetuneConfig, finetune

    config = config_from_args(FinetuneConfig, args, progress=not args.quiet)
    if not Path(config.teacher).is_dir() and (warning := cpu_size_warning(config.teacher, dict(config.overrides))):
        log.warning(warning)
    path = finetune(config, force=args.force)
    print(results_table(json.loads((Path(config.out) / "results.json").read_text())))
    print(f"wrote {path} (curves in {config.out}/run/curves.png)")
    print(f"next: {distill_command(path, config)}")
    return 0


def distill_command(teacher: Path, config: FinetuneConfig) -> str:
    """The `earmark distill` that takes this fine-tuned teacher on: every option it requires, OUT beside this run's."""
    task = ["--task", "frame"] if config.task == "frame" else []
    out = Path(config.out).with_name(Path(config.out).name + "-student")
    return shlex.join(["earmark", "distill", "--teacher", str(teacher), "--student", "tfsepnet64", "--data", config.data, *task,
                       "--qat", "--out", str(out)])
