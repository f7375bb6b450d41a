"""Enrolment where torch is present: the student itself fine-tuned to the enrolled labels, then exported and tuned.

A checkpoint's body gets new label layers (``earmark.students.student_for_labels``) and learns, in a few hundred
steps of the shared training loop (``earmark.engine.Trainer``), from the examples mixed over most of the site
recording (``earmark.audio.mixing``: random SNR and placement), at a random gain; the new layers at ``lr``, the body
at ``body_lr`` (0 freezes it). The model is exported as `earmark export` does (fp32, and INT8 by post-training
quantization calibrated on mixtures of the examples over the site, or for a causal student by rounding its weights to
INT8, ``_weight_int8``); each file's thresholds are chosen as the edge path chooses them
(``earmark.adapt.operating``) on what the fine-tune never heard: the last ``HELD_SITE`` of the site recording alone,
and mixtures of the examples over it. The examples there are ones it trained on, so the recall side of that choice is
optimistic; the false alarms, which decide the threshold under a tight budget, are not.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import soundfile as sf
import torch
from torch import nn

from earmark.adapt.enrol import AdaptSettings, FinetuneSettings, _alone, _mixtures, adaptation_record, enrolled_metadata, timeline
from earmark.adapt.examples import Enrolment
from earmark.adapt.operating import OperatingPoint, choose_thresholds
from earmark.audio.datasets_torch import collate
from earmark.audio.events import EventSettings
from earmark.audio.features_torch import Frontend
from earmark.audio.mixing import MixSettings, SoundscapeMixer
from earmark.audio.mixture_dataset import MixtureDataset
from earmark.engine import CheckpointMeta, TrainConfig, Trainer, checkpoint_hash, load_model, read_meta, save_checkpoint, seed_everything
from earmark.runtime import load_backend
from earmark.students import LABEL_LAYERS, is_causal, quantize, save_quantized_checkpoint, student_for_labels
from earmark.training import frame_loss

HELD_SITE = 0.25  # the share of the site recording kept from the fine-tune to choose the threshold on
INT8_MAX_DIFF = 0.3  # export's parity gate on scores (0.15 for INT8) loosened: each file's threshold is chosen on its own
# scores, and the label agreement gate still holds


class _Step:
    """Frame-wise BCE, each label's positive frames weighted to balance its negatives, of the student on gain-shifted
    mixtures against their frame targets."""

    def __init__(self, frontend: Frontend, gain_db: float):
        self.frontend, self.gain_db = frontend, gain_db

    def __call__(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        waves = batch["wave"]
        gain = 10 ** (torch.empty(waves.shape[0], 1).uniform_(-self.gain_db, self.gain_db) / 20)
        frames = model(self.frontend((waves * gain).clamp(-1, 1)).unsqueeze(1)).frame_logits
        return frame_loss(frames, batch["frame_target"], balanced=True), {}  # balanced per label, as the edge head is


def _mixer(enrolment: Enrolment, site: Path, settings: AdaptSettings, extra: dict) -> SoundscapeMixer:
    """Windows of the model's length (``extra["window_seconds"]``): 1-2 examples over the site, a third without any."""
    return SoundscapeMixer(enrolment.examples, [site], enrolment.sample_rate,
                           MixSettings(duration=float(extra.get("window_seconds", 1.0)), events=(1, 2), snr=settings.snr,
                                       max_overlap=2, background_only=0.3))


def _calibration(enrolment: Enrolment, site: Path, settings: AdaptSettings, extra: dict, folder: Path, count: int = 64) -> Path:
    """``count`` training-like windows written as a folder per label (the first event's): INT8 calibration data."""
    mixer = _mixer(enrolment, site, settings, extra).with_settings(background_only=0.0)
    rng = np.random.default_rng((settings.seed, 7))
    for k in range(count):
        scape = mixer.mix(rng, first=k % len(enrolment.examples.clips))
        (folder / scape.events[0][2]).mkdir(parents=True, exist_ok=True)
        sf.write(folder / scape.events[0][2] / f"calibration-{k:03d}.wav", scape.audio, enrolment.sample_rate)
    return folder


def _train(checkpoint: Path, enrolment: Enrolment, site: Path, settings: AdaptSettings, tuning: FinetuneSettings,
           out: Path) -> Path:
    """The fine-tuned student checkpoint at ``out``."""
    seed_everything(settings.seed)  # the new label layers' first weights too: the same --seed gives the same file
    model, meta = student_for_labels(checkpoint, enrolment.labels)
    head = [p for name, p in model.named_parameters() if name.startswith(LABEL_LAYERS)]
    body = [p for name, p in model.named_parameters() if not name.startswith(LABEL_LAYERS)]
    for p in body:
        p.requires_grad_(tuning.body_lr > 0)
    groups = [{"params": head, "lr": tuning.lr}] + ([{"params": body, "lr": tuning.body_lr}] if tuning.body_lr > 0 else [])
    _fit(model, meta, enrolment, site, settings, tuning, groups, tuning.steps, out.parent / "finetune")
    return save_checkpoint(out, model.eval().state_dict(), meta)


def _weight_int8(trained: Path, out: Path) -> Path:
    """A causal student's INT8 checkpoint at ``out``: every conv's weights rounded to a per-channel INT8 grid (scope
    ``weights``, the only one its stateful export streams), with no further training: a short weight-only QAT on the
    examples, which adapt ran before, moved the model and cost the enrolled file 2-7 points of F1 (docs/evaluation.md)."""
    model, meta = load_model(trained, family="student")
    save_quantized_checkpoint(out, quantize(model, [], "weights", spatial_weights="per-channel").eval(), meta, "weights")
    return out


def _fit(model: nn.Module, meta: CheckpointMeta, enrolment: Enrolment, site: Path, settings: AdaptSettings, tuning: FinetuneSettings,
         groups: list[dict], steps: int, run_dir: Path) -> None:
    """``steps`` steps of the shared training loop on the examples mixed over ``site`` (``_Step``'s loss)."""
    data = MixtureDataset(_mixer(enrolment, site, settings, meta.extra), model.frame_hop_seconds, train=True, seed=settings.seed)
    config = TrainConfig(run_dir=str(run_dir), max_steps=steps, batch_size=tuning.batch_size, lr=groups[0]["lr"],
                         optimizer="adam", schedule="cosine", warmup_steps=steps // 10, seed=settings.seed, progress=False)
    Trainer(config, model, _Step(Frontend(model.frontend), tuning.gain_db), data, collate_fn=collate, params=groups).fit()


def tuning_timelines(model: Path, enrolment: Enrolment, held: Path, settings: AdaptSettings, threads: int = 1) -> tuple[list, list]:
    """What ``model`` (.onnx) hears where its thresholds are chosen: mixtures of every example over the held-out site
    (timeline, events, seconds), and that site alone (timeline, seconds)."""
    backend = load_backend(model, threads=threads)
    everything = list(range(len(enrolment.examples.clips)))
    scapes = _mixtures(enrolment, everything, [held], settings, 2 * len(everything), settings.seed + 1000)
    mixtures = [(timeline(backend, s.audio), s.events, s.audio.size / s.sample_rate) for s in scapes]
    return mixtures, [(timeline(backend, s.audio), s.audio.size / s.sample_rate) for s in _alone([held], enrolment.sample_rate)]


def _operating_point(model: Path, enrolment: Enrolment, held: Path, settings: AdaptSettings, events: EventSettings,
                     threads: int) -> OperatingPoint:
    """The thresholds for ``model`` (.onnx) on its ``tuning_timelines``."""
    mixtures, site = tuning_timelines(model, enrolment, held, settings, threads)
    return choose_thresholds(mixtures, site, enrolment.labels, replace(events, thresholds={}, offset_lag=0.0), settings.max_false_alarms)


def finetune(checkpoint: str | Path, enrolment: Enrolment, events: EventSettings, outs: dict[str, Path],
             settings: AdaptSettings = AdaptSettings(), tuning: FinetuneSettings = FinetuneSettings(),
             threads: int = 1) -> dict[str, dict]:
    """Fine-tune ``checkpoint`` to ``enrolment`` and write it to ``outs`` (precision -> .onnx: "fp32", "int8"); returns
    each file's held-out record (module docstring)."""
    from earmark.export import attach_metadata, export_onnx

    started = time.perf_counter()
    meta = read_meta(checkpoint)
    torch.set_num_threads(threads)
    cut = int(round((1 - HELD_SITE) * enrolment.background.size))
    validations = {}
    with tempfile.TemporaryDirectory(prefix="earmark-adapt-") as tmp:
        site, held = Path(tmp) / "site.wav", Path(tmp) / "held.wav"
        sf.write(site, enrolment.background[:cut], enrolment.sample_rate)
        sf.write(held, enrolment.background[cut:], enrolment.sample_rate)
        trained = _train(Path(checkpoint), enrolment, site, settings, tuning, Path(tmp) / "student")
        base = {"model_name": meta.model, "labels": list(meta.labels), "precision": "fp32", "source_checkpoint_sha256": checkpoint_hash(checkpoint)}
        for precision, out in outs.items():
            exported = Path(tmp) / f"{precision}.onnx"
            if precision == "int8" and is_causal(meta.model):
                export_onnx(_weight_int8(trained, Path(tmp) / "student-int8"), exported, precision)
            elif precision == "int8":
                calibration = _calibration(enrolment, site, settings, meta.extra, Path(tmp) / "calibration")
                export_onnx(trained, exported, precision, calib=str(calibration), max_diff=INT8_MAX_DIFF)
            else:
                export_onnx(trained, exported, precision)
            point = _operating_point(exported, enrolment, held, settings, events, threads)
            validations[precision] = {"held_site_seconds": round((enrolment.background.size - cut) / enrolment.sample_rate, 1),
                                      **dataclasses.asdict(point)}
            model = onnx.load(str(exported))
            metadata = enrolled_metadata(load_backend(exported).metadata, enrolment.labels, point.thresholds, events, adaptation_record(
                base, enrolment, f"fine-tuned student, {precision}", {**dataclasses.asdict(settings), **dataclasses.asdict(tuning)},
                validations[precision], time.perf_counter() - started))
            attach_metadata(model, metadata)
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            onnx.save(model, str(out))
    return validations
