"""Fine-tuning a teacher on a labelled manifest: heads from ``heads.py``, frozen or full backbone, the shared engine."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from earmark.audio.datasets_torch import collate
from earmark.audio.features_torch import Frontend
from earmark.audio.sources import DataSource, eval_loader, open_data, train_dataset
from earmark.engine import Trainer, TrainConfig, plot_metrics, save_checkpoint, setup_distributed, start_run
from earmark.engine.metrics import accuracies, average_precision, frame_f1
from earmark.teachers.cache import TeacherCache
from earmark.teachers.checkpoint import teacher_backbone, teacher_checkpoint_meta, teacher_from_checkpoint
from earmark.teachers.heads import TeacherClassifier
from earmark.teachers.layers import match_time
from earmark.teachers.pretrain.acmsskd import kd_loss


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
    multi_label: bool | None = None  # None: as the manifest says; True trains independent sigmoid detectors (BCE)
    freq_mask: int = 20
    time_mask: int = 20
    precision: str = "fp32"
    seed: int = 0
    progress: bool = True
    kd_cache: str = ""  # a teacher-output cache: train on ACM-SSKD's KD loss (eqs. 11-13) against it instead of the labels
    kd_gamma: float = 1.0  # weight of the logit MSE in the KD loss
    workers: int = 0  # DataLoader workers decoding audio


def _mask(features: torch.Tensor, width: int, axis: int) -> torch.Tensor:
    """SpecAugment: one random band of up to ``width`` bins zeroed per item along ``axis`` (2 mel, 3 time)."""
    if width <= 0:
        return features
    size = features.shape[axis]
    w = torch.randint(0, width + 1, (features.shape[0],), device=features.device)
    start = (torch.rand(features.shape[0], device=features.device) * (size - w).clamp(min=1)).long()
    idx = torch.arange(size, device=features.device)
    band = (idx[None] >= start[:, None]) & (idx[None] < (start + w)[:, None])
    shape = [-1, 1, size, 1] if axis == 2 else [-1, 1, 1, size]
    return features.masked_fill(band.view(shape), 0.0)


@torch.no_grad()
def evaluate(model: nn.Module, frontend: Frontend, manifest: DataSource, clip_seconds: float, multi_label: bool | None = None,
             workers: int = 0) -> dict[str, float]:
    """Accuracy and macro accuracy (single-label) or mAP (multi-label) on deterministic crops; frame F1 for frame models."""
    model.eval()
    device = next(model.parameters()).device
    frame = getattr(model, "task", "clip") == "frame"
    scores, targets, frame_scores, frame_targets = [], [], [], []
    for batch in eval_loader(manifest, frontend.spec.sample_rate, clip_seconds, 32, model.frame_hop_seconds if frame else None, workers):
        out = model(frontend(batch["wave"].to(device)).unsqueeze(1))
        scores.append(out.clip_logits.float().cpu().numpy())
        targets.append(batch["target"].numpy())
        if frame:
            frame_targets.append(batch["frame_target"])
            frame_scores.append(torch.sigmoid(match_time(out.frame_logits.float().cpu(), batch["frame_target"].shape[1])).numpy())
    s, t = np.concatenate(scores), np.concatenate(targets)
    if frame:
        return {"frame_f1": frame_f1(np.concatenate(frame_scores), torch.cat(frame_targets).numpy()), "mAP": average_precision(s, t)}
    if manifest.multi_label if multi_label is None else multi_label:
        result = {"mAP": average_precision(s, t)}
        if t.sum(1).max() > 1:
            return result
        return {**result, "accuracy": float((s.argmax(1) == t.argmax(1)).mean())}
    return accuracies(s.argmax(1), t.argmax(1), t.shape[1])


def _kd_cache(config: FinetuneConfig, manifest: DataSource, multi: bool) -> TeacherCache:
    if multi:
        raise ValueError("the KD loss (--kd-cache) compares softmax distributions, so it needs single-label clip data; "
                         "drop --kd-cache for multi-label or frame tasks.")
    cache = TeacherCache.open(config.kd_cache)
    cache.check_covers(manifest, config.data)
    return cache


def finetune(config: FinetuneConfig, force: bool = False) -> Path:
    """Fine-tune; returns the checkpoint folder of the best epoch on validation (``OUT/teacher``); ``force`` replaces another run in OUT."""
    manifest = open_data(config.data)
    out = start_run(config, manifest.fingerprint(), force)  # the model's initial weights are part of the run's seed
    train, val, test = manifest.train_val_test(config.val_fold, config.test_fold)
    backbone, name, overrides = teacher_backbone(config.teacher, config.overrides)
    model = TeacherClassifier(backbone, len(manifest.labels), config.head, config.task)
    if config.freeze:
        backbone.requires_grad_(False)
    info = setup_distributed()
    frontend = Frontend(backbone.frontend).to(info.device)
    frame = config.task == "frame"
    multi = frame or (manifest.multi_label if config.multi_label is None else config.multi_label)
    cache = _kd_cache(config, manifest, multi) if config.kd_cache else None

    def step(m, batch):
        lam = float(np.random.beta(config.mixup_alpha, config.mixup_alpha)) if config.mixup_alpha > 0 else 1.0
        perm = torch.randperm(batch["wave"].shape[0], device=batch["wave"].device)
        waves = lam * batch["wave"] + (1 - lam) * batch["wave"][perm]
        features = _mask(_mask(frontend(waves).unsqueeze(1), config.freq_mask, 2), config.time_mask, 3)
        out = m(features)
        if cache is not None:
            teacher = torch.from_numpy(cache.lookup(batch["id"])).to(out.clip_logits.device)
            return kd_loss(out.clip_logits, lam * teacher + (1 - lam) * teacher[perm], config.kd_gamma), {}
        target = lam * batch["target"] + (1 - lam) * batch["target"][perm]
        loss = F.binary_cross_entropy_with_logits(out.clip_logits, target) if multi else torch.sum(-target * F.log_softmax(out.clip_logits, 1), 1).mean()
        if frame:  # strong labels: BCE per frame on the model's own frame grid
            frames = lam * batch["frame_target"] + (1 - lam) * batch["frame_target"][perm]
            loss = loss + F.binary_cross_entropy_with_logits(out.frame_logits, match_time(frames, out.frame_logits.shape[1]))
        return loss, {}

    path = out / "teacher"
    meta = teacher_checkpoint_meta(backbone.frontend, name, overrides, manifest.labels.to_list(), config.task, config.head,
                                   window_seconds=config.clip_seconds, objective="detect" if multi else "classify")
    key = "frame_f1" if frame else "mAP" if multi else "accuracy"
    head_params = [p for n, p in model.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
    body_params = [p for p in backbone.parameters() if p.requires_grad]
    groups = [{"params": head_params, "lr": config.lr * config.head_lr_scale}] + ([{"params": body_params}] if body_params else [])
    steps = max(len(train) // config.batch_size, 1)
    train_config = TrainConfig(run_dir=str(out / "run"), epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                               weight_decay=config.weight_decay, warmup_steps=config.warmup_epochs * steps, schedule=config.schedule,
                               precision=config.precision, seed=config.seed, keep_best=key, progress=config.progress,
                               num_workers=config.workers)
    data = train_dataset(train, frontend.spec.sample_rate, config.clip_seconds, config.batch_size, config.seed,
                         backbone.frame_hop_seconds if frame else None)
    trainer = Trainer(train_config, model, step, data,
                      collate_fn=collate, val_fn=lambda m: evaluate(m, frontend, val, config.clip_seconds, multi, config.workers),
                      on_best=lambda m, metrics: save_checkpoint(path, m.state_dict(), meta), params=groups, dist_info=info)
    trainer.fit(resume=True)
    chance = {} if multi else dict.fromkeys(["accuracy", "macro_accuracy"], 1 / len(manifest.labels))  # single-label: 1 / C
    plot_metrics(out / "run", chance)
    best, _ = teacher_from_checkpoint(path)
    results = {"test": evaluate(best.to(info.device), frontend, test, config.clip_seconds, multi, config.workers),
               **({"chance": chance} if chance else {})}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return path
