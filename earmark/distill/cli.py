"""`earmark distill --teacher CKPT_OR_CACHE --student tfsepnet64 --data MANIFEST [--qat]`."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

HELP = {
    "teachers": "teacher checkpoint (repeat for an ensemble; a student checkpoint teaches too) or a cache folder",
    "student": "a registered student (see `earmark complexity --list`)",
    "student_overrides": "JSON constructor arguments, e.g. '{\"base_channels\": 32}'",
    "init": "a student checkpoint to start from, e.g. one from `earmark convert --from tfsepnet`",
    "data": "a labelled manifest (folds from its fold column, else from a hash of the ids) or its WebDataset shards",
    "out": "the run folder (student checkpoints, config.json, results.json, pictures)",
    "task": "frame: an SED student on strong labels, frame KD from a frame teacher",
    "cache": "where the teacher-output cache lives (default OUT/teacher-cache)",
    "kd": "train on hard labels only (a baseline)",
    "online_teacher": "run the teachers on every augmented batch instead of the cache",
    "qat": "NNCF quantization-aware training after the float run",
    "epochs": "float training epochs",
    "qat_epochs": "QAT fine-tuning epochs",
    "batch_size": None,
    "lr": "peak learning rate (Adam)",
    "qat_lr": "learning rate of the QAT epochs",
    "int8_scope": "what QAT quantizes: conv weights only (CPU: a third of fp32's bytes at fp32's speed; the default for TF-SepNet), "
                  "pointwise convs (the default for ViTs) or all convs (TensorRT, NPUs)",
    "schedule": "learning-rate schedule after warm-up",
    "restart_epochs": "first period of the cosine restarts",
    "warmup_epochs": "linear warm-up before the schedule",
    "temperature": "KD temperature T (default: 2 to classify, CP-JKU's DCASE recipe; 1 to detect, EfficientAT's BCE KD)",
    "hard_weight": "weight of the hard-label loss, 1 - weight goes to KD (default: 0.02 to classify, 0.1 to detect)",
    "kl_reduction": "KL divergence reduction (DCASE baselines use mean)",
    "kd_keep_labels": "detect: the teacher's probability is raised to the label where it is lower, so a labelled event the "
                      "teacher missed is not taught as absent (KD keeps the teacher's view of the other classes)",
    "feature_weight": "> 0 adds MSE from the student's projected embedding to the teacher's (ACM-SSKD eqs. 11-13)",
    "mixup_alpha": "Beta(a, a) mixup; 0 turns it off",
    "freq_mixstyle_p": "probability of Freq-MixStyle per batch",
    "freq_mixstyle_alpha": "Beta(a, a) of Freq-MixStyle",
    "specaugment_freq": "SpecAugment: widest masked band of mel bins (0: off)",
    "dir_folder": "impulse responses for device simulation (DIR)",
    "dir_p": "probability of convolving a clip with an impulse response",
    "roll_seconds": "largest random time roll",
    "balanced_frames": "frame task: weigh each class's positive frames by its negative frames in the batch (at most 100x), "
                       "as enrolment's fine-tune does; plain BCE teaches rare short sounds to stay low (the loss on frame "
                       "labels: a frame teacher's KD keeps its own)",
    "objective": "detect: a sigmoid per class, BCE, `listen` reports events; classify: a softmax, `listen` reports scenes "
                 "(default: detect for multi-label or strong labels, else classify)",
    "backgrounds": "a folder or manifest of background recordings: every epoch trains on new mixtures of the clips over them, "
                   "and event thresholds are tuned on held-out mixtures (--objective detect)",
    "mix_snr": "event-to-background dB range (LOW HIGH) of those mixtures",
    "source_chain": "a recording-chain stage each training event may pass through before it is mixed, with probability 0.5 "
                    "(repeat: bandlimit, eq, reverb): a detector for sounds from sources it never heard (docs/distill.md)",
    "distractors": "a folder or manifest of sounds outside the label set: half the training mixtures also hold one, never "
                   "labelled, so the detector learns that not every sound is one of its classes (needs --backgrounds)",
    "scenes": "the backgrounds are labelled scenes (a manifest, or a folder per scene): the student also learns each mixture's "
              "scene in a second, softmax head, and `listen` reports scenes beside events",
    "median": "the `earmark listen --median` the event thresholds are tuned for",
    "min_duration": "... its --min-duration",
    "max_gap": "... its --max-gap",
    "max_false_alarms": "tune the event thresholds for the most events found with at most this many false alarms per hour "
                        "of validation audio, all classes together (each class's own with --per-class-thresholds; a PSD-ROC operating point) "
                        "instead of the best event F1",
    "per_class_thresholds": "tune one event threshold per class instead of one shared by all (needs many validation events "
                            "per class; see docs/distill.md)",
    "tune": "skip tuning event thresholds (a teacher or a baseline that no daemon listens with); `earmark tune OUT` tunes them later",
    "clip_seconds": None,
    "val_fold": None,
    "test_fold": None,
    "calibration_clips": "training clips that calibrate the INT8 quantizers",
    "precision": None,
    "workers": None,
    "skip_bad": None,
    "seed": None,
}


def configure(parser: argparse.ArgumentParser) -> None:
    from earmark.distill.run import DistillConfig
    from earmark.audio.chain import STAGES
    from earmark.engine import SCHEDULES, add_config_options
    from earmark.engine.trainer import default_workers

    add_config_options(parser, DistillConfig, HELP,
                       rename={"teachers": "--teacher", "hard_weight": "--kd-lambda", "mixup_alpha": "--mixup", "kd": "--no-kd",
                               "tune": "--no-tune"},
                       choices={"source_chain": list(STAGES), "task": ["clip", "frame"], "precision": ["fp32", "bf16", "fp16"], "schedule": SCHEDULES,
                                "kl_reduction": ["mean", "batchmean"], "int8_scope": ["weights", "pointwise", "all"],
                                "objective": ["detect", "classify"]})
    parser.set_defaults(workers=default_workers())  # this machine's, also when a config.json from another is repeated
    parser.add_argument("--force", action="store_true", help="start over when --out holds another run (otherwise it is refused)")


def task_mismatch(teacher: str, task: str) -> str | None:
    """A sentence explaining what a frame teacher gives a clip student, or a clip teacher a frame student; None if they match."""
    from earmark.engine import read_meta
    from earmark.teachers.cache import TeacherCache

    path = Path(teacher)
    if (path / "index.json").is_file():  # a teacher-output cache: frame logits or not
        teaches_frames = TeacherCache.open(path).has("frame_logits")
    elif (path / "earmark.json").is_file():
        teaches_frames = read_meta(path).task == "frame"
    else:
        return None
    if teaches_frames and task == "clip":
        return (f"{teacher} is a frame-level (SED) teacher; this clip student learns from its clip logits only. "
                "For a student that detects events frame by frame, pass --task frame.")
    if not teaches_frames and task == "frame":
        return (f"{teacher} is a clip-level teacher: the frame student gets clip KD and learns its frames from the strong labels "
                "only; a frame teacher (`earmark finetune --task frame`) also teaches the frames.")
    return None


def run(args: argparse.Namespace) -> int:
    from earmark.distill.run import DistillConfig, distill
    from earmark.engine import cleanup, config_from_args, results_table, setup_distributed

    config = config_from_args(DistillConfig, args, progress=not args.quiet)
    if not config.teachers and config.kd:
        raise ValueError("pass --teacher CHECKPOINT (or a cache folder), or --no-kd for a hard-label baseline.")
    for teacher in config.teachers if config.kd else []:
        if warning := task_mismatch(teacher, config.task):
            log.warning(warning)
    final = distill(config, force=args.force)
    if setup_distributed().is_main:  # under torchrun, one rank reports
        out = Path(config.out)
        results = json.loads((out / "results.json").read_text())
        print(results_table(results))
        pictures = [p.relative_to(out).as_posix() for p in sorted(out.glob("*.png")) + sorted(out.glob("*/curves.png"))]
        print(f"wrote {final}; pictures in {out}: {', '.join(pictures)}")
        export = f"earmark export {final} --format onnx{'' if config.qat else ' --int8 --calib ' + config.data}"
        untuned = results.get("objective") == "detect" and not config.tune  # --no-tune: no event thresholds yet
        print(f"next: earmark tune {out} (event thresholds), then {export}" if untuned else f"next: {export}")
    cleanup()
    return 0
