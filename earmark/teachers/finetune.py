"""Fine-tuning a teacher on a labelled manifest: heads from ``heads.py``, frozen or full backbone, the shared engine."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from earmark.audio.datasets_torch import collate
from earmark.audio.features_torch import Frontend
from earmark.audio.sources import DataSource, data_identity, open_data
from earmark.engine import Trainer, TrainConfig, load_model, plot_metrics, save_checkpoint, setup_distributed, start_run
from earmark.teachers.cache import TeacherCache
from earmark.teachers.checkpoint import teacher_backbone, teacher_checkpoint_meta
from earmark.teachers.heads import TeacherClassifier
from earmark.teachers.pretrain.acmsskd import kd_loss
from earmark.training import Augmentation, Augmenter, best_metric, collect_outputs, frame_loss, label_loss, make_splits, metrics, resolve_objective


@dataclass
class FinetuneConfig:
    """One fine-tuning run; saved as config.json in the run folder."""

    teacher: str  # a registry name (random init) or a teacher checkpoint folder
    data: str
    out: str
    overrides: dict = field(default_factory=dict)
    head: str = "linear"
    task: str = "clip"  # "frame": strong labels (DESED style), a frame head, frame F1
    freeze: bool = False
    clip_seconds: float = 1.0
    val_fold: int = 4
    test_fold: int = 5
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4
    head_lr_scale: float = 10.0
    weight_decay: float = 0.01
    warmup_epochs: int = 1
    schedule: str = "cosine"
    mixup_alpha: float = 0.3
    objective: str = ""  # "detect" (sigmoid events) | "classify" (softmax scenes); "": detect for multi-label or frame data
    backgrounds: str = ""  # a folder or manifest of background recordings: train and validate on clips mixed over them
    mix_snr: tuple[float, float] = (0.0, 15.0)
    source_chain: list[str] = field(default_factory=list)  # recording-chain stages for training events (audio.chain)
    freq_mask: int = 20
    time_mask: int = 20
    precision: str = "fp32"
    seed: int = 0
    progress: bool = True
    kd_cache: str = ""  # a teacher-output cache: train on ACM-SSKD's KD loss (eqs. 11-13) against it instead of the labels
    kd_gamma: float = 1.0  # weight of the logit MSE in the KD loss
    workers: int = 0  # DataLoader workers decoding audio
    skip_bad: bool = False  # leave out files that do not decode to finite audio (each named, listed in OUT/skipped.txt)


def _kd_cache(config: FinetuneConfig, manifest: DataSource, objective: str) -> TeacherCache:
    if objective == "detect" or config.backgrounds:
        raise ValueError("the KD loss (--kd-cache) compares softmax distributions, so it needs single-label clips and "
                         "--objective classify (no --backgrounds); drop --kd-cache to train a detector.")
    cache = TeacherCache.open(config.kd_cache)
    cache.check_covers(manifest, config.data)
    return cache


def finetune(config: FinetuneConfig, force: bool = False) -> Path:
    """Fine-tune; returns the checkpoint folder of the best epoch on validation (``OUT/teacher``); ``force`` replaces another run in OUT."""
    manifest = open_data(config.data, skip_bad=config.skip_bad)
    out = start_run(config, data_identity(manifest), force, manifest.skipped)  # the model's initial weights are part of the run's seed
    objective = resolve_objective(config.objective, manifest, config.task)
    backbone, name, overrides = teacher_backbone(config.teacher, config.overrides)
    model = TeacherClassifier(backbone, len(manifest.labels), config.head, config.task)
    if config.freeze:
        backbone.requires_grad_(False)
    info = setup_distributed()
    frontend = Frontend(backbone.frontend).to(info.device)
    frame = config.task == "frame"
    splits = make_splits(manifest, objective, frontend.spec.sample_rate, config.clip_seconds, backbone.frame_hop_seconds if frame else None,
                         config.val_fold, config.test_fold, config.batch_size, config.seed, config.backgrounds, tuple(config.mix_snr),
                         config.workers, chain=tuple(config.source_chain))
    cache = _kd_cache(config, manifest, objective) if config.kd_cache else None
    augment = Augmenter(Augmentation(config.mixup_alpha, config.freq_mask, config.time_mask), frontend)

    def step(m, batch):
        augmented = augment(batch["wave"])
        mix, out = augmented.mix, m(augmented.features)
        if cache is not None:
            teacher = torch.from_numpy(cache.lookup(batch["id"])).to(out.clip_logits.device)
            return kd_loss(out.clip_logits, mix.targets(teacher), config.kd_gamma), {}
        loss = label_loss(out.clip_logits, mix.targets(batch["target"]), objective)
        if frame:  # strong labels: BCE per frame on the model's own frame grid
            frames = mix.targets(batch["frame_target"])
            loss = loss + frame_loss(out.frame_logits, frames)
        return loss, {}

    path = out / "teacher"
    meta = teacher_checkpoint_meta(backbone.frontend, name, overrides, manifest.labels.to_list(), config.task, config.head,
                                   window_seconds=config.clip_seconds, objective=objective)
    key = best_metric(objective, config.task)
    head_params = [p for n, p in model.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
    body_params = [p for p in backbone.parameters() if p.requires_grad]
    groups = [{"params": head_params, "lr": config.lr * config.head_lr_scale}] + ([{"params": body_params}] if body_params else [])
    steps = max(len(splits.train) // config.batch_size, 1)
    train_config = TrainConfig(run_dir=str(out / "run"), epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                               weight_decay=config.weight_decay, warmup_steps=config.warmup_epochs * steps, schedule=config.schedule,
                               precision=config.precision, seed=config.seed, keep_best=key, progress=config.progress,
                               num_workers=config.workers)
    trainer = Trainer(train_config, model, step, splits.train,
                      collate_fn=collate, val_fn=lambda m: metrics(collect_outputs(m, frontend, splits.val), objective),
                      on_best=lambda m, scores: save_checkpoint(path, m.state_dict(), meta), params=groups, dist_info=info)
    trainer.fit(resume=True)
    chance = dict.fromkeys(["accuracy", "macro_accuracy"], 1 / len(manifest.labels)) if objective == "classify" else {}  # 1 / C
    plot_metrics(out / "run", chance)
    best, _ = load_model(path, "teacher")
    test = metrics(collect_outputs(best.to(info.device), frontend, splits.test), objective)
    results = {"objective": objective, "test": test, **({"chance": chance} if chance else {}),
               **({"skipped": len(manifest.skipped)} if manifest.skipped else {})}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return path
