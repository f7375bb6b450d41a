"""The distillation run: teacher-output cache -> KD training of a student -> optional NNCF QAT -> checkpoints and plots."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from earmark.audio.datasets_torch import collate
from earmark.audio.events import EventSettings
from earmark.audio.metadata import default_hop_seconds
from earmark.audio.mixing import background_scenes, find_backgrounds
from earmark.audio.features_torch import Frontend
from earmark.audio import resample as audio_resample
from earmark.audio.sources import DataSource, data_identity, open_data
from earmark.audio.spec import get_frontend
from earmark.distill.losses import bce_kd, frame_kd, soft_kd
from earmark.engine import (Trainer, TrainConfig, barrier, class_average_precision, class_f1, plot_class_scores, plot_confusion,
                            load_model, plot_metrics, save_checkpoint, setup_distributed, start_run)
from earmark.engine.checkpoint import update_extra
from earmark.engine.outputs import ModelOutput, probabilities
from earmark.students import cpu_default_scope, create_student, quantize, save_quantized_checkpoint, student_checkpoint_meta
from earmark.teachers.cache import TeacherCache, check_labels
from earmark.teachers.predict import Predictor, ensemble_key, predict_to_cache
from earmark.training import (Augmentation, Augmenter, Outputs, best_metric, collect_outputs, frame_loss, label_loss, make_splits, metrics,
                              resolve_objective, tuning_soundscapes)
from earmark.distill.thresholds import Tuning, tune_model, write_thresholds

log = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    """One distillation run; saved as config.json in the run folder."""

    data: str
    out: str
    teachers: list[str] = field(default_factory=list)  # checkpoints (teacher or student family), or one cache folder
    student: str = "tfsepnet64"
    task: str = "clip"  # "frame": a frame-level (SED) student on strong labels, frame KD from a frame teacher
    objective: str = ""  # "detect" (sigmoid events) | "classify" (softmax scenes); "": detect for multi-label or frame data
    backgrounds: str = ""  # a folder or manifest of background recordings: train and validate on clips mixed over them
    mix_snr: tuple[float, float] = (0.0, 15.0)  # event-to-background dB of those mixtures
    source_chain: list[str] = field(default_factory=list)  # recording-chain stages for training events (audio.chain)
    distractors: str = ""  # a folder or manifest of sounds outside the label set, placed unlabelled in training mixtures
    scenes: bool = False  # the backgrounds are labelled scenes: the student also learns each mixture's scene (a second head)
    median: int = 1  # the `earmark listen` post-processing the event thresholds are tuned for
    min_duration: float = 0.0
    max_gap: float = 0.0
    max_false_alarms: float | None = None  # tune for the most events found within this many false alarms per hour, not F1
    per_class_thresholds: bool = False  # one event threshold per class instead of one shared by all
    tune: bool = True  # tune event thresholds on the validation soundscapes (off: a teacher or baseline nobody listens with)
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
    temperature: float | None = None  # None: 2.0 to classify (CP-JKU's DCASE recipe), 1.0 to detect (EfficientAT's BCE KD)
    hard_weight: float | None = None  # None: 0.02 to classify, 0.1 to detect (the same two recipes)
    feature_weight: float = 0.0  # > 0: also regress the teacher's clip embedding (ACM-SSKD eqs. 11-13)
    kd_keep_labels: bool = False  # detect: the soft target never falls below the label (a teacher's miss is not taught)
    kl_reduction: str = "mean"
    mixup_alpha: float = 0.3
    freq_mixstyle_p: float = 0.8
    freq_mixstyle_alpha: float = 0.4
    specaugment_freq: int = 0
    roll_seconds: float = 0.0
    balanced_frames: bool = False  # frame task: each class's positive frames weighted by its negatives (training.frame_loss)
    dir_folder: str = ""
    dir_p: float = 0.4
    kd: bool = True
    online_teacher: bool = False  # run the teachers on every augmented batch (GPU clusters) instead of the cache
    qat: bool = False
    qat_epochs: int = 5
    qat_lr: float = 1e-4
    # QAT quantizes what the export stores as INT8: weights (CPU: INT8 weights, float compute at fp32's speed), pointwise
    # (CPU) or all (TensorRT, NPUs); None: the student's CPU default (students.cpu_default_scope)
    int8_scope: str | None = None
    calibration_clips: int = 128
    seed: int = 0
    precision: str = "fp32"
    workers: int = 0  # DataLoader workers decoding audio
    skip_bad: bool = False  # leave out files that do not decode to finite audio (each named, listed in OUT/skipped.txt)
    progress: bool = True


def load_teacher(path: str) -> tuple[Predictor, list[str]]:
    """Any earmark checkpoint as a teacher, with its labels: a fine-tuned teacher, or a student (a big student can teach a small one)."""
    from earmark.engine.checkpoint import checkpoint_hash

    model, meta = load_model(path)  # teachers and students both register their checkpoints (imported above)
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
    key = ensemble_key(predictors, manifest, config.clip_seconds)
    path = Path(config.cache or Path(config.out) / "teacher-cache")
    hint = f"delete {path} or pass --cache elsewhere to rebuild it"
    if (path / "index.json").is_file():
        cache = TeacherCache.open(path, expect_key=key, rebuild_hint=hint)
        if embeddings and not cache.has("embeddings"):
            raise ValueError(f"{path}: this teacher-output cache holds no embeddings, which --feature-weight needs; "
                             f"{hint} (or write it with `earmark predict ... --embeddings`).")
        return cache
    predict_to_cache(predictors, manifest, path, config.clip_seconds, embeddings=embeddings, workers=config.workers)  # every rank scores its parts
    return TeacherCache.open(path, expect_key=key)


KD_RECIPES = {"classify": (2.0, 0.02), "detect": (1.0, 0.1)}  # objective -> (temperature, hard-label weight) by default


class _Step:
    """One KD training step: the shared augmentations, the student, its loss against labels and teacher outputs."""

    def __init__(self, config: DistillConfig, frontend: Frontend, cache: TeacherCache | None, objective: str,
                 online: list[Predictor] | None = None):
        self.config, self.frontend, self.cache, self.objective = config, frontend, cache, objective
        recipe = KD_RECIPES[objective]
        self.temperature = recipe[0] if config.temperature is None else config.temperature
        self.hard_weight = recipe[1] if config.hard_weight is None else config.hard_weight
        self.online = [(p.model.eval().requires_grad_(False), Frontend(p.frontend)) for p in online or []]
        self.augment = Augmenter(Augmentation(config.mixup_alpha, config.specaugment_freq, 0, config.freq_mixstyle_p,
                                              config.freq_mixstyle_alpha, config.roll_seconds, config.dir_folder, config.dir_p), frontend)

    def loss(self, logits: torch.Tensor, target: torch.Tensor, teacher: torch.Tensor | None) -> torch.Tensor:
        if teacher is None:
            return label_loss(logits, target, self.objective)
        if self.objective == "detect":
            return bce_kd(logits, teacher, target, self.temperature, self.hard_weight, self.config.kd_keep_labels)
        return soft_kd(logits, teacher, target, self.temperature, self.hard_weight, self.config.kl_reduction)

    def frame_loss(self, frame_logits: torch.Tensor, frames: torch.Tensor, teacher_frames: torch.Tensor | None) -> torch.Tensor:
        """Strong labels, and the teacher's frames resampled to the student's grid when there are any."""
        if teacher_frames is not None:
            return frame_kd(frame_logits, teacher_frames, frames, self.temperature, self.hard_weight)
        return frame_loss(frame_logits, frames, self.config.balanced_frames)

    def __call__(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        augmented = self.augment(batch["wave"])
        mix, out = augmented.mix, model(augmented.features)
        loss = self.events_loss(out, batch, augmented, model)
        if out.scene_logits is not None:  # the second head learns the background's scene from labels (no scene teacher)
            loss = loss + mix.loss(lambda y: label_loss(out.scene_logits, y, "classify"), batch["scene_target"])
        return loss, {}

    def events_loss(self, out: ModelOutput, batch: dict, augmented, model: nn.Module) -> torch.Tensor:
        """The main head's loss: labels, and the teachers' outputs (online, or cached per clip) where there are any."""
        c, mix = self.config, augmented.mix
        logits, frame_logits = out.clip_logits, out.frame_logits
        projected = out.embedding if isinstance(model, FeatureDistill) else None
        if self.online:  # the teachers hear the same mixed, augmented audio: their outputs need no mixing
            teacher, teacher_frames = self.teacher_outputs(augmented.waves)
            loss = mix.loss(lambda y: self.loss(logits, y, teacher), batch["target"])
            if frame_logits is not None:
                loss = loss + self.frame_loss(frame_logits, mix.targets(batch["frame_target"]), teacher_frames)
            return loss
        targets = {"y": batch["target"]}
        if frame_logits is not None:
            targets["frames"] = batch["frame_target"]
        if self.cache is not None and c.kd:
            device = logits.device
            if "event_ids" in batch:  # soundscapes: the teacher heard each placed clip on its own
                targets["t"] = mixture_teacher(self.cache, batch["event_ids"]).to(device)
            else:
                targets["t"] = torch.from_numpy(self.cache.lookup(batch["id"])).to(device)
                if frame_logits is not None and self.cache.has("frame_logits"):
                    targets["t_frames"] = torch.from_numpy(self.cache.lookup(batch["id"], "frame_logits")).to(device)
            if projected is not None:
                targets["t_embedding"] = torch.from_numpy(self.cache.lookup(batch["id"], "embeddings")).to(device)

        def total(*values):
            v = dict(zip(targets, values))
            loss = self.loss(logits, v["y"], v.get("t"))
            if frame_logits is not None:
                loss = loss + self.frame_loss(frame_logits, v["frames"], v.get("t_frames"))
            if "t_embedding" in v:  # eqs. 11-13: MSE of the projected student embedding to the teacher's
                loss = loss + c.feature_weight * nn.functional.mse_loss(projected, v["t_embedding"])
            return loss

        return mix.loss(total, *targets.values())

    @torch.no_grad()
    def teacher_outputs(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The online ensemble's averaged clip logits (and frame logits when every member gives them), each at its own rate."""
        rate = self.frontend.spec.sample_rate
        clips, frames = [], []
        for teacher, frontend in self.online:
            frontend = frontend.to(waves.device)
            out = teacher.to(waves.device)(frontend(resample(waves, rate, frontend.spec.sample_rate)).unsqueeze(1))
            clips.append(out.require("clip_logits", "fine-tune the teacher first (`earmark finetune`)."))
            frames.append(out.frame_logits)
        frame = torch.stack(frames).mean(0) if all(f is not None for f in frames) else None
        return torch.stack(clips).mean(0), frame


def mixture_teacher(cache: TeacherCache, event_ids: list[list[str]]) -> torch.Tensor:
    """Teacher clip logits for soundscapes from its cached per-clip logits: per class, the most confident placed clip.

    ``p_c = max_k sigmoid(t_kc)`` over the clips k placed in the soundscape (1e-4 when none was), returned as logits.
    """
    classes = cache.row_shape("clip_logits")[0]
    probs = np.full((len(event_ids), classes), 1e-4)
    for row, ids in enumerate(event_ids):
        if ids:
            probs[row] = np.maximum(probs[row], (1 / (1 + np.exp(-cache.lookup(ids).astype(np.float64)))).max(axis=0))
    probs = np.clip(probs, 1e-4, 1 - 1e-4)
    return torch.from_numpy(np.log(probs / (1 - probs))).float()


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


def plot_test(test: Outputs, labels: list[str], out: Path) -> Path:
    """The test fold's picture: a confusion matrix for one label per clip, else per-class F1 and AP bars (frame or multi-label)."""
    if test.frame_logits is not None:
        scores = {"frame F1": class_f1(probabilities(torch.from_numpy(test.frame_logits), "detect").numpy(), test.frame_targets),
                  "clip AP": class_average_precision(test.clip_logits, test.targets)}
        return plot_class_scores(scores, labels, out / "classes.png", "test fold: frame F1 per class (threshold 0.5) and clip AP")
    if (test.targets.sum(1) == 1).all():
        return plot_confusion(test.targets.argmax(1), test.clip_logits.argmax(1), labels, out / "confusion.png")
    scores = {"F1": class_f1(probabilities(torch.from_numpy(test.clip_logits), "detect").numpy(), test.targets), "AP": class_average_precision(test.clip_logits, test.targets)}
    return plot_class_scores(scores, labels, out / "classes.png", "test fold: F1 per class (threshold 0.5) and AP")


def _init_weights(config: DistillConfig, student: nn.Module, labels: list[str]) -> dict[str, torch.Tensor]:
    """The weights of ``--init``, refused in one sentence when they are another student or another label set."""
    start, meta = load_model(config.init, "student")
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
    manifest = open_data(config.data, skip_bad=config.skip_bad)
    out = start_run(config, data_identity(manifest), force, manifest.skipped)  # the model's initial weights are part of the run's seed
    objective = resolve_objective(config.objective, manifest, config.task)
    labels = manifest.labels.to_list()
    frame = config.task == "frame"
    if config.scenes and not config.backgrounds:
        raise ValueError("--scenes learns the scene of each background recording; pass --backgrounds SCENE_MANIFEST too.")
    scenes = background_scenes(config.backgrounds) if config.scenes else None  # (scene labels, recording -> scene)
    scene_labels = scenes[0] if scenes else []
    student = create_student(config.student, len(labels), config.task, **config.student_overrides,
                             **({"scene_classes": len(scene_labels)} if scene_labels else {}))
    if config.init:
        student.load_state_dict(_init_weights(config, student, labels))
    frontend = Frontend(student.frontend)
    splits = make_splits(manifest, objective, frontend.spec.sample_rate, config.clip_seconds, student.frame_hop_seconds if frame else None,
                         config.val_fold, config.test_fold, config.batch_size, config.seed, config.backgrounds, tuple(config.mix_snr),
                         config.workers, scenes, tuple(config.source_chain), distractor_files(config))
    online = None
    if config.online_teacher and config.kd:
        loaded = [load_teacher(t) for t in config.teachers]
        for (_, teacher_labels), path in zip(loaded, config.teachers):
            check_labels(teacher_labels, manifest, path)
        online = [p for p, _ in loaded]
    cached_kd = config.kd and config.teachers and not online
    if cached_kd and config.distractors:
        raise ValueError("--distractors adds sounds the cached teacher outputs never heard; pass --online-teacher (the teachers "
                         "hear each mixture) or --no-kd.")
    cache = teacher_cache(config, manifest) if cached_kd else None
    if cache is not None and config.backgrounds and objective != "detect":
        raise ValueError("soundscape KD from cached clip outputs combines sigmoid scores; pass --objective detect.")
    info = setup_distributed()
    frontend = frontend.to(info.device)
    step = _Step(config, frontend, cache, objective, online)
    hop = default_hop_seconds(config.clip_seconds)
    meta = lambda **extra: student_checkpoint_meta(student, config.student, labels, config.task, config.student_overrides,
                                                   objective=objective, scene_labels=scene_labels, window_seconds=config.clip_seconds,
                                                   hop_seconds=hop, **extra)
    best_path = out / "student"
    key = best_metric(objective, config.task)
    validate = lambda model: metrics(collect_outputs(getattr(model, "student", model), frontend, splits.val), objective)

    def save_best(model, scores):
        save_checkpoint(best_path, getattr(model, "student", model).state_dict(), meta(**{f"val_{key}": scores[key]}))

    steps_per_epoch = max(len(splits.train) // config.batch_size, 1)
    train_config = TrainConfig(
        run_dir=str(out / "float"), epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        optimizer="adam", schedule=config.schedule, restart_period=config.restart_epochs * steps_per_epoch,
        warmup_steps=config.warmup_epochs * steps_per_epoch, seed=config.seed, keep_best=key,
        precision=config.precision, progress=config.progress, num_workers=config.workers)
    trained = student
    if config.feature_weight > 0:
        if cache is None or not cache.has("embeddings") or config.backgrounds:
            raise ValueError("--feature-weight needs the teacher's embedding of every training clip in the cache; pass --teacher "
                             "checkpoints (not a cache without embeddings) and no --backgrounds (soundscapes have no cached embedding).")
        example = torch.zeros(1, 1, frontend.spec.n_mels, frontend.spec.num_frames(int(config.clip_seconds * frontend.spec.sample_rate)))
        trained = FeatureDistill(student, cache.row_shape("embeddings")[0], example)
    Trainer(train_config, trained, step, splits.train, collate_fn=collate, val_fn=validate, on_best=save_best, dist_info=info).fit(resume=True)
    barrier()  # rank 0 wrote the best checkpoint
    chance = {} if frame or manifest.multi_label else dict.fromkeys(["accuracy", "macro_accuracy"], 1 / len(labels))
    if info.is_main:
        plot_metrics(out / "float", chance)
    student, _ = load_model(best_path, "student")
    final_model, final = student.to(info.device), best_path
    results = {"objective": objective, "float": metrics(collect_outputs(final_model, frontend, splits.test), objective)}
    if config.qat:
        final = _qat(config, student, frontend, splits, step, meta, info, validate, key, chance)
        final_model = load_model(final, "student")[0].to(info.device)
        results["int8"] = metrics(collect_outputs(final_model, frontend, splits.test), objective)
    if chance:
        results["chance"] = chance
    if manifest.skipped:
        results["skipped"] = len(manifest.skipped)
    tunings = {}  # checkpoint -> its thresholds: the float student and, after QAT, the INT8 one (each exports on its own)
    if objective == "detect" and splits.soundscapes and config.tune:  # thresholds for the daemon, tuned as it will decide
        tunings = tune_checkpoints(config, {best_path: student, final: final_model}, frontend, splits.soundscapes, labels, objective)
    elif objective == "detect" and config.tune:
        log.warning("no soundscapes to tune event thresholds on, so the model keeps 0.5 for every class; pass --backgrounds "
                    "(or train on strong-labelled soundscapes) to tune them.")
    if info.is_main:
        save_tunings(config, tunings, final, results)
        plot_test(collect_outputs(final_model, frontend, splits.test), labels, out)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    barrier()
    return final


def tune_checkpoints(config: DistillConfig, models: dict[Path, nn.Module], frontend: Frontend, soundscapes: list,
                     labels: list[str], objective: str) -> dict[Path, Tuning]:
    """Event thresholds for each checkpoint's model as `listen` will run it: its window, the default hop, the run's
    post-processing, criterion (``max_false_alarms``) and scope (``per_class_thresholds``)."""
    return {path: tune_model(model, frontend, soundscapes, labels, objective, config.clip_seconds, default_hop_seconds(config.clip_seconds),
                             event_settings(config), config.max_false_alarms, config.per_class_thresholds) for path, model in models.items()}


def event_settings(config: DistillConfig) -> EventSettings:
    """The run's post-processing (median filter, minimum duration, gap merging), as its thresholds are tuned with it."""
    return EventSettings(median=config.median, min_duration=config.min_duration, max_gap=config.max_gap)


def run_config(run: str | os.PathLike, **overrides) -> DistillConfig:
    """A finished run's settings from its config.json, with ``overrides``."""
    run = Path(run)
    if not (run / "config.json").is_file() or not (run / "student" / "earmark.json").is_file():
        raise ValueError(f"{run} holds no finished distill run (config.json and student/); pass the --out of `earmark distill`.")
    return DistillConfig(**{**json.loads((run / "config.json").read_text()), **overrides})


def distractor_files(config: DistillConfig) -> list[Path]:
    """The run's distractor recordings (``--distractors``), none without."""
    return find_backgrounds(config.distractors, "distractor recordings", "sounds outside the label set") if config.distractors else []


def validation_soundscapes(config: DistillConfig, manifest: DataSource, sample_rate: int) -> list:
    """The run's tuning soundscapes, mixed again from its config exactly as make_splits mixed them."""
    scenes = background_scenes(config.backgrounds) if config.scenes else None
    return tuning_soundscapes(manifest, sample_rate, config.val_fold, config.test_fold, config.seed, config.backgrounds,
                              tuple(config.mix_snr), scenes, distractor_files(config))


def save_tunings(config: DistillConfig, tunings: dict[Path, Tuning], final: Path, results: dict) -> None:
    """Thresholds and post-processing into each checkpoint (export writes them into the model), the final checkpoint's
    into OUT/thresholds.json and ``results["thresholds"]``, the float student's after QAT into ``float_thresholds``."""
    out = Path(config.out)
    for path, tuning in tunings.items():
        update_extra(path, thresholds=tuning.thresholds,
                     postprocess={"median": config.median, "min_duration": config.min_duration, "max_gap": config.max_gap})
    if not tunings:
        return
    write_thresholds(out / "thresholds.json", tunings[final].thresholds)
    results["thresholds"] = tunings[final].to_dict()
    if len(tunings) > 1:
        results["float_thresholds"] = tunings[out / "student"].to_dict()


def retune(run: str | os.PathLike, max_false_alarms: float | None = None, per_class: bool = False) -> dict[Path, Tuning]:
    """Tune a finished detector run's event thresholds again on its validation soundscapes, with this criterion and
    scope: written into its checkpoints, thresholds.json and results.json (`earmark tune`). No training is repeated."""
    run = Path(run)
    config = run_config(run, out=str(run), max_false_alarms=max_false_alarms, per_class_thresholds=per_class)
    manifest = open_data(config.data, skip_bad=config.skip_bad)
    objective = resolve_objective(config.objective, manifest, config.task)
    if objective != "detect":
        raise ValueError(f"{run} trained a scene classifier (objective {objective}): it reports scenes and has no event thresholds.")
    final = run / "student-int8" if (run / "student-int8" / "earmark.json").is_file() else run / "student"
    models = {path: load_model(path, "student")[0].eval() for path in dict.fromkeys([run / "student", final])}
    frontend = Frontend(next(iter(models.values())).frontend)
    soundscapes = validation_soundscapes(config, manifest, frontend.spec.sample_rate)
    if not soundscapes:
        raise ValueError(f"{run} has no validation soundscapes to tune on: it was trained without --backgrounds on clips.")
    tunings = tune_checkpoints(config, models, frontend, soundscapes, manifest.labels.to_list(), objective)
    results = json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else {}
    save_tunings(config, tunings, final, results)
    (run / "results.json").write_text(json.dumps(results, indent=2))
    return tunings


def _qat(config, student, frontend, splits, step, meta, info, validate, key: str, chance: dict[str, float]) -> Path:
    """NNCF quantization on a calibration subset of the training data, then fine-tuning with the same KD loss; keeps the best on validation."""
    calibration, seen = [], 0
    with torch.no_grad():
        for batch in splits.calibration:
            calibration.append(frontend(batch["wave"].to(info.device)).unsqueeze(1))
            seen += len(batch["id"])
            if seen >= config.calibration_clips:
                break
    scope = config.int8_scope or cpu_default_scope(student)
    qmodel = quantize(student, calibration, scope)
    path = Path(config.out) / "student-int8"

    def save_best(model, scores):
        save_quantized_checkpoint(path, model, meta(**{f"val_{key}": scores[key]}), scope)

    qat_config = TrainConfig(run_dir=str(Path(config.out) / "qat"), epochs=config.qat_epochs, batch_size=config.batch_size,
                             lr=config.qat_lr, optimizer="adam", schedule="cosine", seed=config.seed, keep_best=key,
                             progress=config.progress, num_workers=config.workers)
    Trainer(qat_config, qmodel, step, splits.train, collate_fn=collate, val_fn=validate, on_best=save_best, dist_info=info).fit(resume=True)
    barrier()
    if info.is_main:
        plot_metrics(Path(config.out) / "qat", chance)
    return path

