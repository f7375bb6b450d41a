"""The distillation run: teacher-output cache -> KD training of a student -> optional NNCF QAT -> checkpoints and plots."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from earmark.audio.datasets_torch import collate
from earmark.audio.features_torch import Frontend
from earmark.audio import resample as audio_resample
from earmark.audio.sources import DataSource, eval_loader, open_data, train_dataset
from earmark.audio.spec import get_frontend
from earmark.distill.augment import ImpulseResponses, draw_mix, freq_mixstyle, spec_augment, time_roll
from earmark.distill.losses import bce_kd, frame_kd, soft_kd
from earmark.engine import (Trainer, TrainConfig, accuracies, average_precision, barrier, class_average_precision, class_f1, frame_f1,
                            plot_class_scores, plot_confusion, plot_metrics, read_meta, save_checkpoint, setup_distributed, start_run)
from earmark.engine.outputs import ModelOutput
from earmark.students import (create_student, load_quantized_student, quantize, save_quantized_checkpoint, student_checkpoint_meta,
                              student_from_checkpoint)
from earmark.teachers.cache import TeacherCache, check_labels
from earmark.teachers.layers import match_time
from earmark.teachers.predict import Predictor, ensemble_key, predict_to_cache


@dataclass
class DistillConfig:
    """One distillation run; saved as config.json in the run folder."""

    data: str
    out: str
    teachers: list[str] = field(default_factory=list)  # checkpoints (teacher or student family), or one cache folder
    student: str = "tfsepnet64"
    task: str = "clip"  # "frame": a frame-level (SED) student on strong labels, frame KD from a frame teacher
    student_overrides: dict = field(default_factory=dict)
    init: str = ""  # a student checkpoint to start from (e.g. `earmark convert --from tfsepnet`), else random weights
    cache: str = ""  # where the teacher-output cache lives (default: OUT/teacher-cache)
    clip_seconds: float = 1.0
    val_fold: int = 4
    test_fold: int = 5
    epochs: int = 30
    batch_size: int = 64
    lr: float = 4e-3
    schedule: str = "cosine_restarts"
    restart_epochs: int = 10
    warmup_epochs: int = 1
    temperature: float = 2.0
    hard_weight: float = 0.02
    feature_weight: float = 0.0  # > 0: also regress the teacher's clip embedding (ACM-SSKD eqs. 11-13)
    kl_reduction: str = "mean"
    mixup_alpha: float = 0.3
    freq_mixstyle_p: float = 0.8
    freq_mixstyle_alpha: float = 0.4
    specaugment_freq: int = 0
    roll_seconds: float = 0.0
    dir_folder: str = ""
    dir_p: float = 0.4
    kd: bool = True
    online_teacher: bool = False  # run the teachers on every augmented batch (GPU clusters) instead of the cache
    multi_label: bool | None = None  # None: as the manifest says; True trains independent sigmoid detectors (BCE)
    qat: bool = False
    qat_epochs: int = 5
    qat_lr: float = 1e-4
    int8_scope: str = "pointwise"  # QAT quantizes what the export stores as INT8: pointwise (CPU) or all (TensorRT)
    calibration_clips: int = 128
    seed: int = 0
    precision: str = "fp32"
    workers: int = 0  # DataLoader workers decoding audio
    progress: bool = True


def load_teacher(path: str) -> tuple[Predictor, list[str]]:
    """Any earmark checkpoint as a teacher, with its labels: a fine-tuned teacher, or a student (a big student can teach a small one)."""
    from earmark.engine.checkpoint import checkpoint_hash

    meta = read_meta(path)
    if meta.family == "teacher":
        from earmark.teachers import teacher_from_checkpoint

        model, meta = teacher_from_checkpoint(path)
    else:
        from earmark.students import student_from_checkpoint

        model, meta = student_from_checkpoint(path)
    return Predictor(model, get_frontend(meta.frontend), checkpoint_hash(path)), meta.labels


def teacher_cache(config: DistillConfig, manifest: DataSource) -> TeacherCache:
    """The cache for these teachers on this manifest: reused when its key matches, built on first use."""
    if len(config.teachers) == 1 and (Path(config.teachers[0]) / "index.json").is_file():
        cache = TeacherCache.open(config.teachers[0])
        cache.check_covers(manifest, config.data)
        return cache
    loaded = [load_teacher(t) for t in config.teachers]
    for (_, labels), path in zip(loaded, config.teachers):
        check_labels(labels, manifest, path)
    predictors = [p for p, _ in loaded]
    embeddings = config.feature_weight > 0
    key = ensemble_key(predictors, manifest, config.clip_seconds, embeddings)
    path = Path(config.cache or Path(config.out) / "teacher-cache")
    hint = f"delete {path} or pass --cache elsewhere to rebuild it"
    if (path / "index.json").is_file():
        return TeacherCache.open(path, expect_key=key, rebuild_hint=hint)
    predict_to_cache(predictors, manifest, path, config.clip_seconds, embeddings=embeddings, workers=config.workers)  # every rank scores its parts
    return TeacherCache.open(path, expect_key=key)


class _Step:
    """One KD training step: waveform augmentation, features, mixup, feature augmentation, loss."""

    def __init__(self, config: DistillConfig, frontend: Frontend, cache: TeacherCache | None, multi_label: bool,
                 online: list[Predictor] | None = None):
        self.config, self.frontend, self.cache, self.multi_label = config, frontend, cache, multi_label
        self.online = [(p.model.eval().requires_grad_(False), Frontend(p.frontend)) for p in online or []]
        self.dir = ImpulseResponses(config.dir_folder, frontend.spec.sample_rate, config.dir_p) if config.dir_folder else None
        self.roll = int(config.roll_seconds * frontend.spec.sample_rate)

    def loss(self, logits: torch.Tensor, target: torch.Tensor, teacher: torch.Tensor | None) -> torch.Tensor:
        c = self.config
        if teacher is None:
            return (nn.functional.binary_cross_entropy_with_logits(logits, target) if self.multi_label
                    else nn.functional.cross_entropy(logits, target.argmax(1)))
        if self.multi_label:
            return bce_kd(logits, teacher, target, c.temperature, c.hard_weight)
        return soft_kd(logits, teacher, target, c.temperature, c.hard_weight, c.kl_reduction)

    def __call__(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        c, waves = self.config, batch["wave"]
        if self.dir is not None:
            waves = self.dir(waves)
        waves = time_roll(waves, self.roll)
        mix = draw_mix(waves.shape[0], c.mixup_alpha)
        features = self.frontend(mix.inputs(waves)).unsqueeze(1)
        features = freq_mixstyle(features, c.freq_mixstyle_alpha, c.freq_mixstyle_p)
        if c.specaugment_freq:
            features = spec_augment(features, c.specaugment_freq)
        out = model(features)
        logits, frame_logits = out.clip_logits, out.frame_logits
        projected = out.embedding if isinstance(model, FeatureDistill) else None
        if self.online:  # the teachers hear the same mixed, augmented audio: their outputs need no mixing
            teacher = self.teacher_logits(mix.inputs(waves))
            y = batch["target"]
            return mix.lam * self.loss(logits, y, teacher) + (1 - mix.lam) * self.loss(logits, y[mix.perm], teacher), {}
        targets = {"y": batch["target"]}
        if frame_logits is not None:
            targets["frames"] = batch["frame_target"]
        if self.cache is not None and c.kd:
            targets["t"] = torch.from_numpy(self.cache.lookup(batch["id"])).to(logits.device)
            if frame_logits is not None and self.cache.has("frame_logits"):
                targets["t_frames"] = torch.from_numpy(self.cache.lookup(batch["id"], "frame_logits")).to(logits.device)
            if projected is not None:
                targets["t_embedding"] = torch.from_numpy(self.cache.lookup(batch["id"], "embeddings")).to(logits.device)

        def total(*values):
            v = dict(zip(targets, values))
            loss = self.loss(logits, v["y"], v.get("t"))
            if frame_logits is not None:  # strong labels, and the teacher's frames resampled to the student's grid
                hard = nn.functional.binary_cross_entropy_with_logits(frame_logits, match_time(v["frames"], frame_logits.shape[1]))
                loss = loss + (frame_kd(frame_logits, v["t_frames"], v["frames"], c.temperature) if "t_frames" in v else hard)
            if "t_embedding" in v:  # eqs. 11-13: MSE of the projected student embedding to the teacher's
                loss = loss + c.feature_weight * nn.functional.mse_loss(projected, v["t_embedding"])
            return loss

        return mix.loss(total, *targets.values()), {}

    @torch.no_grad()
    def teacher_logits(self, waves: torch.Tensor) -> torch.Tensor:
        """The online ensemble's averaged clip logits, each teacher at its own sample rate."""
        rate = self.frontend.spec.sample_rate
        total = 0.0
        for teacher, frontend in self.online:
            frontend = frontend.to(waves.device)
            audio = resample(waves, rate, frontend.spec.sample_rate)
            out = teacher.to(waves.device)(frontend(audio).unsqueeze(1))
            total = total + out.require("clip_logits", "fine-tune the teacher first (`earmark finetune`).")
        return total / len(self.online)


def resample(waves: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    """(B, N) waves to ``target`` Hz with the resampler the teacher cache's audio went through (soxr HQ, on the CPU).

    Online and cached KD then hear the same filter; each clip is filtered on its own, with no wrap-around at its edges.
    """
    if rate == target:
        return waves
    out = audio_resample(waves.detach().float().cpu().numpy().T, rate, target).T  # clips as channels: one call per batch
    return torch.from_numpy(np.ascontiguousarray(out)).to(waves.device, waves.dtype)


class FeatureDistill(nn.Module):
    """Trains a learned projection beside the student; only ``student`` is saved.

    Its output is the student's, with the embedding projected into the teacher's embedding space.
    """

    def __init__(self, student: nn.Module, teacher_dim: int, example: torch.Tensor):
        super().__init__()
        self.student = student
        with torch.no_grad():
            student_dim = student.eval()(example).embedding.shape[1]
        self.project = nn.Linear(student_dim, teacher_dim)

    def forward(self, features: torch.Tensor) -> ModelOutput:
        out = self.student(features)
        return dataclasses.replace(out, embedding=self.project(out.embedding))


@torch.no_grad()
def scores(model: nn.Module, frontend: Frontend, manifest: DataSource, config: DistillConfig) -> tuple[np.ndarray, np.ndarray]:
    """Logits and targets over a split (deterministic centre crops)."""
    model.eval()
    loader = eval_loader(manifest, frontend.spec.sample_rate, config.clip_seconds, 64, workers=config.workers)
    device = next(model.parameters()).device
    logits, targets = [], []
    for batch in loader:
        logits.append(model(frontend(batch["wave"].to(device)).unsqueeze(1)).clip_logits.cpu().numpy())
        targets.append(batch["target"].numpy())
    return np.concatenate(logits), np.concatenate(targets)


@torch.no_grad()
def frame_outputs(model: nn.Module, frontend: Frontend, manifest: DataSource, config: DistillConfig) -> tuple[np.ndarray, ...]:
    """Frame probabilities and targets (clips, frames, classes), clip logits and targets of a frame-level student."""
    model.eval()
    device = next(model.parameters()).device
    frames, frame_targets, clips, targets = [], [], [], []
    for batch in eval_loader(manifest, frontend.spec.sample_rate, config.clip_seconds, 16, model.frame_hop_seconds, config.workers):
        out = model(frontend(batch["wave"].to(device)).unsqueeze(1))
        frames.append(torch.sigmoid(match_time(out.frame_logits.cpu(), batch["frame_target"].shape[1])).numpy())
        frame_targets.append(batch["frame_target"].numpy())
        clips.append(out.clip_logits.cpu().numpy())
        targets.append(batch["target"].numpy())
    return tuple(np.concatenate(parts) for parts in (frames, frame_targets, clips, targets))


def frame_scores(model: nn.Module, frontend: Frontend, manifest: DataSource, config: DistillConfig) -> dict[str, float]:
    """Frame F1 (threshold 0.5) and clip mAP of a frame-level student on strong labels."""
    frames, frame_targets, clips, targets = frame_outputs(model, frontend, manifest, config)
    return {"frame_f1": frame_f1(frames, frame_targets), "mAP": average_precision(clips, targets)}


def plot_test(model: nn.Module, frontend: Frontend, test: DataSource, config: DistillConfig, labels: list[str], out: Path) -> Path:
    """The test fold's picture: a confusion matrix for one label per clip, else per-class F1 and AP bars (frame or multi-label)."""
    if config.task == "frame":
        frames, frame_targets, clips, targets = frame_outputs(model, frontend, test, config)
        return plot_class_scores({"frame F1": class_f1(frames, frame_targets), "clip AP": class_average_precision(clips, targets)},
                                 labels, out / "classes.png", "test fold: frame F1 per class (threshold 0.5) and clip AP")
    logits, targets = scores(model, frontend, test, config)
    if (targets.sum(1) == 1).all():
        return plot_confusion(targets.argmax(1), logits.argmax(1), labels, out / "confusion.png")
    return plot_class_scores({"F1": class_f1(1 / (1 + np.exp(-logits)), targets), "AP": class_average_precision(logits, targets)},
                             labels, out / "classes.png", "test fold: F1 per class (threshold 0.5) and AP")


def evaluate(model: nn.Module, frontend: Frontend, manifest: DataSource, config: DistillConfig) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true class indices over a split."""
    logits, targets = scores(model, frontend, manifest, config)
    return logits.argmax(1), targets.argmax(1)


def calibrate_thresholds(logits: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Per class, the sigmoid threshold with the best F1 on the validation clips (the runtime's default thresholds)."""
    probs = 1 / (1 + np.exp(-logits))
    grid = np.linspace(0.05, 0.95, 19)
    thresholds = {}
    for k, label in enumerate(labels):
        positive = targets[:, k] > 0.5
        hits = np.array([(probs[positive, k] >= g).sum() for g in grid])
        flagged = np.array([(probs[:, k] >= g).sum() for g in grid])
        f1 = 2 * hits / np.maximum(positive.sum() + flagged, 1)  # F1 = 2 TP / (P + predicted P)
        thresholds[label] = round(float(grid[int(np.argmax(f1))]), 2)
    return thresholds


def _store_thresholds(path: Path, thresholds: dict[str, float]) -> None:
    """Record calibrated thresholds in a checkpoint's earmark.json (export copies them into the model)."""
    meta_file = path / "earmark.json"
    meta = json.loads(meta_file.read_text())
    meta["extra"]["thresholds"] = thresholds
    tmp = meta_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(tmp, meta_file)


def _init_weights(config: DistillConfig, student: nn.Module, labels: list[str]) -> dict[str, torch.Tensor]:
    """The weights of ``--init``, refused in one sentence when they are another student or another label set."""
    start, meta = student_from_checkpoint(config.init)
    shapes = {k: v.shape for k, v in student.state_dict().items()}
    if meta.model != config.student or {k: v.shape for k, v in start.state_dict().items()} != shapes or meta.labels != labels:
        raise ValueError(f"--init {config.init} is a {meta.model} for the labels {meta.labels[:4]}...; this run trains "
                         f"{config.student} (overrides {config.student_overrides}) for {labels[:4]}...: pass the same student, "
                         "overrides and label set, or drop --init.")
    return start.state_dict()


def distill(config: DistillConfig, force: bool = False) -> Path:
    """Run it; returns the folder of the final student checkpoint (``OUT/student`` or ``OUT/student-int8``).

    A folder holding the same run resumes it; another run there is refused unless ``force`` starts over.
    """
    manifest = open_data(config.data)
    out = start_run(config, manifest.fingerprint(), force)  # the model's initial weights are part of the run's seed
    train, val, test = manifest.train_val_test(config.val_fold, config.test_fold)
    classes = len(manifest.labels)
    frame = config.task == "frame"
    student = create_student(config.student, classes, config.task, **config.student_overrides)
    if config.init:
        student.load_state_dict(_init_weights(config, student, manifest.labels.to_list()))
    frontend = Frontend(student.frontend)
    online = None
    if config.online_teacher and config.kd:
        loaded = [load_teacher(t) for t in config.teachers]
        for (_, labels), path in zip(loaded, config.teachers):
            check_labels(labels, manifest, path)
        online = [p for p, _ in loaded]
    cache = teacher_cache(config, manifest) if (config.kd and config.teachers and not online) else None
    info = setup_distributed()
    frontend = frontend.to(info.device)
    multi = frame or (manifest.multi_label if config.multi_label is None else config.multi_label)
    step = _Step(config, frontend, cache, multi, online)
    meta = lambda **extra: student_checkpoint_meta(student, config.student, manifest.labels.to_list(), config.task,
                                                   config.student_overrides, window_seconds=config.clip_seconds,
                                                   objective="detect" if multi else "classify", **extra)
    best_path = out / "student"

    def validate(model):
        model = getattr(model, "student", model)
        return frame_scores(model, frontend, val, config) if frame else accuracies(*evaluate(model, frontend, val, config), classes)

    def save_best(model, metrics):
        save_checkpoint(best_path, getattr(model, "student", model).state_dict(), meta(**{f"val_{key}": metrics[key]}))

    key = "frame_f1" if frame else "accuracy"

    steps_per_epoch = max(len(train) // config.batch_size, 1)
    train_config = TrainConfig(
        run_dir=str(out / "float"), epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        optimizer="adam", schedule=config.schedule, restart_period=config.restart_epochs * steps_per_epoch,
        warmup_steps=config.warmup_epochs * steps_per_epoch, seed=config.seed, keep_best=key,
        precision=config.precision, progress=config.progress, num_workers=config.workers)
    data = train_dataset(train, frontend.spec.sample_rate, config.clip_seconds, config.batch_size, config.seed,
                         student.frame_hop_seconds if frame else None)
    trained = student
    if config.feature_weight > 0:
        if cache is None or not cache.has("embeddings"):
            raise ValueError("--feature-weight needs teacher embeddings in the cache; pass --teacher checkpoints (not a cache "
                             "without embeddings) so earmark can build one with them.")
        example = torch.zeros(1, 1, frontend.spec.n_mels, frontend.spec.num_frames(int(config.clip_seconds * frontend.spec.sample_rate)))
        trained = FeatureDistill(student, cache.row_shape("embeddings")[0], example)
    Trainer(train_config, trained, step, data, collate_fn=collate, val_fn=validate, on_best=save_best, dist_info=info).fit(resume=True)
    barrier()  # rank 0 wrote the best checkpoint
    chance = {} if frame or manifest.multi_label else dict.fromkeys(["accuracy", "macro_accuracy"], 1 / classes)
    if info.is_main:
        plot_metrics(out / "float", chance)
    student, _ = student_from_checkpoint(best_path)
    student = student.to(info.device)
    measure = (lambda m: frame_scores(m, frontend, test, config)) if frame else (lambda m: accuracies(*evaluate(m, frontend, test, config), classes))
    results = {"float": measure(student)}
    final, final_model = best_path, student
    if config.qat:
        final = _qat(config, student, frontend, train, data, step, meta, info, validate, key, chance)
        final_model = load_quantized_student(final)[0].to(info.device)
        results["int8"] = measure(final_model)
    if chance:
        results["chance"] = chance
    if multi:  # sigmoid detectors: calibrate each class's threshold on validation for the runtime
        results["thresholds"] = calibrate_thresholds(*scores(final_model, frontend, val, config), manifest.labels.to_list())
    if info.is_main:
        if multi:
            _store_thresholds(final, results["thresholds"])
        plot_test(final_model, frontend, test, config, manifest.labels.to_list(), out)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    barrier()
    return final


def _qat(config, student, frontend, train, data, step, meta, info, validate, key: str, chance: dict[str, float]) -> Path:
    """NNCF quantization on a calibration subset, then fine-tuning with the same KD loss; keeps the best on validation."""
    calib_loader = eval_loader(train, frontend.spec.sample_rate, config.clip_seconds, 16, workers=config.workers)
    calibration, seen = [], 0
    with torch.no_grad():
        for batch in calib_loader:
            calibration.append(frontend(batch["wave"].to(info.device)).unsqueeze(1))
            seen += len(batch["id"])
            if seen >= config.calibration_clips:
                break
    qmodel = quantize(student, calibration, config.int8_scope)
    path = Path(config.out) / "student-int8"

    def save_best(model, metrics):
        save_quantized_checkpoint(path, model, meta(**{f"val_{key}": metrics[key]}), config.int8_scope)

    qat_config = TrainConfig(run_dir=str(Path(config.out) / "qat"), epochs=config.qat_epochs, batch_size=config.batch_size,
                             lr=config.qat_lr, optimizer="adam", schedule="cosine", seed=config.seed, keep_best=key,
                             progress=config.progress, num_workers=config.workers)
    Trainer(qat_config, qmodel, step, data, collate_fn=collate, val_fn=validate, on_best=save_best, dist_info=info).fit(resume=True)
    barrier()
    if info.is_main:
        plot_metrics(Path(config.out) / "qat", chance)
    return path

