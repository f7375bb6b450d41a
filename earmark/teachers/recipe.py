"""The training recipe fine-tuning and distillation share: the objective, augmentations, losses on labels, evaluation.

``objective`` is the one multi-label decision: ``detect`` trains independent sigmoid detectors with
per-class BCE (sound events), ``classify`` a softmax over classes (scenes). Augmentations run
batched: impulse responses and time roll on waveforms, mixup (inputs and targets with one draw),
then Freq-MixStyle and SpecAugment on features. ``collect_outputs`` is the one evaluation loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from earmark.audio.datasets_torch import collate
from earmark.audio.features_torch import Frontend
from earmark.audio.io import load_audio
from earmark.audio.manifest import Manifest, clip_fold
from earmark.audio.mixing import MixSettings, Soundscape, SoundscapeMixer, find_backgrounds, split_backgrounds
from earmark.audio.mixture_dataset import MixtureDataset
from earmark.audio.sources import DataSource, eval_loader, train_dataset
from earmark.engine.metrics import accuracies, average_precision, frame_f1
from earmark.engine.outputs import OBJECTIVES, probabilities
from earmark.teachers.layers import match_time


def resolve_objective(objective: str | None, manifest: DataSource, task: str = "clip") -> str:
    """``detect`` or ``classify``: as asked, else as the manifest is labelled (frame tasks always detect)."""
    if objective not in (None, "", *OBJECTIVES):
        raise ValueError(f"objective {objective!r} is not 'detect' (sigmoid, events) or 'classify' (softmax, scenes).")
    if task == "frame":
        if objective == "classify":
            raise ValueError("a frame-level (--task frame) model detects events per frame; use --objective detect or --task clip.")
        return "detect"
    return objective or ("detect" if manifest.multi_label else "classify")


def label_loss(logits: torch.Tensor, target: torch.Tensor, objective: str) -> torch.Tensor:
    """Loss on (possibly mixed) label targets: per-class BCE to detect, cross-entropy with soft targets to classify."""
    if objective == "detect":
        return F.binary_cross_entropy_with_logits(logits, target)
    return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()


@dataclass
class Mix:
    """A mixup draw: ``x = lam x + (1 - lam) x[perm]``; targets and losses are mixed with the same ``lam`` and ``perm``."""

    lam: float
    perm: torch.Tensor

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.lam * x + (1 - self.lam) * x[self.perm.to(x.device)]

    targets = inputs  # labels mix exactly as the inputs did

    def loss(self, loss_fn: Callable[..., torch.Tensor], *targets: torch.Tensor) -> torch.Tensor:
        """``lam L(targets) + (1 - lam) L(targets[perm])``: hard labels and teacher outputs move together."""
        return self.lam * loss_fn(*targets) + (1 - self.lam) * loss_fn(*(t[self.perm.to(t.device)] for t in targets))


def draw_mix(batch_size: int, alpha: float, generator: torch.Generator | None = None) -> Mix:
    """Mixup with lam ~ Beta(alpha, alpha) (alpha 0: no mixing).

    The permutation is drawn either way, so switching mixup off leaves the later augmentations' draws as they were.
    """
    perm = torch.randperm(batch_size, generator=generator)
    if alpha <= 0:
        return Mix(1.0, perm)
    return Mix(float(torch.distributions.Beta(alpha, alpha).sample()), perm)


def freq_mixstyle(features: torch.Tensor, alpha: float = 0.4, p: float = 0.8, eps: float = 1e-6) -> torch.Tensor:
    """Freq-MixStyle (Schmid et al.): mix per-frequency mean/std (over channel and time) between batch items."""
    if p <= 0 or torch.rand(()) > p or features.shape[0] < 2:
        return features
    mean = features.mean(dim=(1, 3), keepdim=True)
    std = (features.var(dim=(1, 3), keepdim=True) + eps).sqrt()
    normed = (features - mean) / std
    lam = torch.distributions.Beta(alpha, alpha).sample((features.shape[0], 1, 1, 1)).to(features)
    perm = torch.randperm(features.shape[0])
    return normed * (lam * std + (1 - lam) * std[perm]) + lam * mean + (1 - lam) * mean[perm]


def spec_augment(features: torch.Tensor, freq_mask: int = 48, time_mask: int = 0, masks: int = 1) -> torch.Tensor:
    """Zero ``masks`` random bands of up to ``freq_mask`` mel bins and ``time_mask`` frames per item (SpecAugment, Park et al.)."""
    b, _, n_freq, n_time = features.shape
    out = features
    for size, axis, extent in ((freq_mask, 2, n_freq), (time_mask, 3, n_time)):
        for _ in range(masks if size > 0 else 0):
            width = torch.randint(0, size + 1, (b,))
            start = (torch.rand(b) * (extent - width).clamp(min=1)).long()
            idx = torch.arange(extent)
            band = (idx[None] >= start[:, None]) & (idx[None] < (start + width)[:, None])
            shape = [b, 1, extent, 1] if axis == 2 else [b, 1, 1, extent]
            out = out.masked_fill(band.view(shape).to(out.device), 0.0)
    return out


def time_roll(waves: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Roll each waveform by a random shift in [-max_shift, max_shift] samples."""
    if max_shift <= 0:
        return waves
    shifts = torch.randint(-max_shift, max_shift + 1, (waves.shape[0],)).tolist()
    return torch.stack([torch.roll(w, s) for w, s in zip(waves, shifts)])


class ImpulseResponses:
    """Device simulation (DIR): convolve waveforms with impulse responses (WAVs in a folder), truncated to length."""

    def __init__(self, folder: str | os.PathLike, sample_rate: int, p: float = 0.4):
        from earmark.audio.io import load_audio

        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".wav", ".flac"))
        if not files:
            raise ValueError(f"{folder}: holds no .wav/.flac impulse responses; point --dir-folder at a folder of them.")
        self.irs = [torch.from_numpy(load_audio(f, sample_rate)) for f in files]
        self.p = p

    def __call__(self, waves: torch.Tensor) -> torch.Tensor:
        out = waves.clone()
        for i in range(waves.shape[0]):
            if torch.rand(()) < self.p:
                ir = self.irs[int(torch.randint(len(self.irs), ()))].to(waves)
                ir = ir / (ir.abs().max() + 1e-9)
                n = waves.shape[1] + ir.numel() - 1
                conv = torch.fft.irfft(torch.fft.rfft(waves[i], n) * torch.fft.rfft(ir, n), n)[: waves.shape[1]]
                out[i] = conv * (waves[i].abs().max() / (conv.abs().max() + 1e-9))
        return out


@dataclass(frozen=True)
class Augmentation:
    """Which augmentations a run applies and how strongly (0 or "" switches one off)."""

    mixup_alpha: float = 0.3
    freq_mask: int = 0  # SpecAugment: widest masked band in mel bins
    time_mask: int = 0  # ... and in frames
    freq_mixstyle_p: float = 0.0
    freq_mixstyle_alpha: float = 0.4
    roll_seconds: float = 0.0
    dir_folder: str = ""
    dir_p: float = 0.4


@dataclass
class Augmented:
    """One augmented batch: the mixed waveforms (what an online teacher hears), the model's features, the mixup draw."""

    waves: torch.Tensor
    features: torch.Tensor
    mix: Mix


class Augmenter:
    """Waveforms (B, N) -> DIR -> roll -> mixup -> features (B, 1, mels, frames) -> Freq-MixStyle -> SpecAugment."""

    def __init__(self, augmentation: Augmentation, frontend: Frontend):
        self.settings, self.frontend = augmentation, frontend
        rate = frontend.spec.sample_rate
        self.dir = ImpulseResponses(augmentation.dir_folder, rate, augmentation.dir_p) if augmentation.dir_folder else None
        self.roll = int(augmentation.roll_seconds * rate)

    def __call__(self, waves: torch.Tensor) -> Augmented:
        s = self.settings
        if self.dir is not None:
            waves = self.dir(waves)
        waves = time_roll(waves, self.roll)
        mix = draw_mix(waves.shape[0], s.mixup_alpha)
        mixed = mix.inputs(waves)
        features = freq_mixstyle(self.frontend(mixed).unsqueeze(1), s.freq_mixstyle_alpha, s.freq_mixstyle_p)
        return Augmented(mixed, spec_augment(features, s.freq_mask, s.time_mask), mix)


@dataclass
class Outputs:
    """A model's logits over a dataset, beside the targets; frame arrays on the targets' frame grid (frame datasets)."""

    ids: list[str]
    clip_logits: np.ndarray
    targets: np.ndarray
    frame_logits: np.ndarray | None = None
    frame_targets: np.ndarray | None = None
    scene_logits: np.ndarray | None = None  # a scene head's, on data that carries scene targets (mixtures over scenes)
    scene_targets: np.ndarray | None = None


@torch.no_grad()
def collect_outputs(model: nn.Module, frontend: Frontend, batches: Iterable[dict]) -> Outputs:
    """Run ``model`` (eval mode) over ``batches`` in order; the one evaluation loop of fine-tuning and distillation."""
    model.eval()
    device = next(model.parameters()).device
    ids, clips, targets, frames, frame_targets, scenes, scene_targets = [], [], [], [], [], [], []
    for batch in batches:
        out = model(frontend(batch["wave"].to(device)).unsqueeze(1))
        ids += batch["id"]
        clips.append(out.clip_logits.float().cpu().numpy())
        targets.append(batch["target"].numpy())
        if "frame_target" in batch and out.frame_logits is not None:
            frame_targets.append(batch["frame_target"].numpy())
            frames.append(match_time(out.frame_logits.float().cpu(), batch["frame_target"].shape[1]).numpy())
        if "scene_target" in batch and out.scene_logits is not None:
            scene_targets.append(batch["scene_target"].numpy())
            scenes.append(out.scene_logits.float().cpu().numpy())
    joined = lambda parts: np.concatenate(parts) if parts else None
    return Outputs(ids, np.concatenate(clips), np.concatenate(targets), joined(frames), joined(frame_targets), joined(scenes),
                   joined(scene_targets))


def metrics(outputs: Outputs, objective: str) -> dict[str, float]:
    """Frame F1, frame mAP and clip mAP for frame outputs; mAP (and accuracy on single-label data) to detect; accuracies to
    classify; and a scene head's accuracies (``scene_accuracy``, ``scene_macro_accuracy``) where there are scene targets."""
    result = _head_metrics(outputs, objective)
    if outputs.scene_logits is not None:
        scenes, truth = outputs.scene_logits, outputs.scene_targets
        result.update({f"scene_{k}": v for k, v in accuracies(scenes.argmax(1), truth.argmax(1), truth.shape[1]).items()})
    return result


def _head_metrics(outputs: Outputs, objective: str) -> dict[str, float]:
    s, t = outputs.clip_logits, outputs.targets
    if outputs.frame_logits is not None:
        frames, frame_targets = outputs.frame_logits, outputs.frame_targets
        return {"frame_f1": frame_f1(probabilities(torch.from_numpy(frames), "detect").numpy(), frame_targets),
                "frame_mAP": average_precision(frames.reshape(-1, frames.shape[-1]), frame_targets.reshape(-1, frames.shape[-1])),
                "mAP": average_precision(s, t)}
    if objective == "detect":
        result = {"mAP": average_precision(s, t)}
        if t.sum(1).max() > 1 or t.sum(1).min() < 1:  # several or no labels per clip: top-1 accuracy means nothing
            return result
        return {**result, **accuracies(s.argmax(1), t.argmax(1), t.shape[1])}
    return accuracies(s.argmax(1), t.argmax(1), t.shape[1])


def best_metric(objective: str, task: str) -> str:
    """The validation metric that picks the best checkpoint: threshold-free for detectors (F1 at 0.5 stays 0 while a rare event's scores rise)."""
    return "frame_mAP" if task == "frame" else "mAP" if objective == "detect" else "accuracy"


def validation_soundscapes(val: Manifest, backgrounds: list[Path], sample_rate: int, snr: tuple[float, float],
                           seed: int = 0) -> list[Soundscape]:
    """Soundscapes to tune on: the split itself when it is strong-labelled, else mixtures of its clips over ``backgrounds``."""
    if val.task == "frame":
        return [Soundscape(load_audio(c.path, sample_rate), list(c.events), "", sample_rate, []) for c in val.clips]
    if not backgrounds or not val.clips:
        return []
    mixer = SoundscapeMixer(val, backgrounds, sample_rate, MixSettings(snr=tuple(snr)))  # 10 s, 1-4 events, some without
    return [mixer.mix(np.random.default_rng((seed, 1 << 20, k))) for k in range(max(8, 2 * len(val)))]  # each clip ~4 times


@dataclass
class Splits:
    """What a run trains on, picks its best checkpoint on, reports on, quantizes with, and tunes event thresholds on."""

    train: Dataset
    val: Iterable[dict]  # batches
    test: Iterable[dict]
    calibration: Iterable[dict]  # batches of training audio as the model hears it
    soundscapes: list[Soundscape]  # validation soundscapes with strong labels (empty: nothing to tune thresholds on)


def fold_backgrounds(data: Manifest, backgrounds: str, val_fold: int, test_fold: int,
                     scenes: tuple[list[str], dict[str, str]] | None = None) -> tuple[list[int], dict[int, list[Path]]]:
    """The folds, and the background recordings of each (split per scene when ``scenes`` labels them)."""
    folds = sorted({clip_fold(c) for c in data.clips} | {val_fold, test_fold})
    if scenes:
        return folds, split_backgrounds([Path(p) for p in scenes[1]], folds, scenes[1])
    return folds, split_backgrounds(find_backgrounds(backgrounds), folds)


def tuning_soundscapes(data: DataSource, sample_rate: int, val_fold: int, test_fold: int, seed: int = 0, backgrounds: str = "",
                       snr: tuple[float, float] = (0.0, 15.0), scenes: tuple[list[str], dict[str, str]] | None = None) -> list[Soundscape]:
    """The validation soundscapes that `make_splits` gives a run with these settings (event thresholds are tuned on them)."""
    _, val, _ = data.train_val_test(val_fold, test_fold)
    if not isinstance(val, Manifest):
        return []
    own = fold_backgrounds(data, backgrounds, val_fold, test_fold, scenes)[1][val_fold] if backgrounds else []
    return validation_soundscapes(val, own, sample_rate, snr, seed)


def make_splits(data: DataSource, objective: str, sample_rate: int, clip_seconds: float, frame_hop: float | None,
                val_fold: int, test_fold: int, batch_size: int, seed: int = 0, backgrounds: str = "",
                snr: tuple[float, float] = (0.0, 15.0), workers: int = 0,
                scenes: tuple[list[str], dict[str, str]] | None = None) -> Splits:
    """Train / validation / test data by fold; with ``backgrounds``, training and validation hear the clips mixed over them.

    Training mixtures are window-long, new every epoch, 1-2 events, half of them background only (on bench_sed's
    real split, 30 epochs, one seed, the test fold's frame mAP was 52% against 40% with a fifth). The backgrounds
    are split by fold like the clips, so validation mixes held-out clips over held-out recordings where there are
    enough of them; so does test for frame models (a weak clip has no frame targets), while a clip model's test is
    the held-out clips as they are. With ``scenes`` (``audio.background_scenes`` of the backgrounds: the scene labels
    and each recording's scene) every mixture item also carries its background's scene.
    """
    train, val, test = data.train_val_test(val_fold, test_fold)
    held_out = lambda split, size: eval_loader(split, sample_rate, clip_seconds, size, frame_hop, workers)
    if not backgrounds:
        return Splits(train_dataset(train, sample_rate, clip_seconds, batch_size, seed, frame_hop), held_out(val, 32), held_out(test, 32),
                      held_out(train, 16), tuning_soundscapes(data, sample_rate, val_fold, test_fold, seed))
    if objective != "detect":
        raise ValueError("--backgrounds mixes events over background recordings to train detectors; pass --objective detect "
                         "(scene classifiers train on the recordings as they are).")
    if not isinstance(data, Manifest):
        raise ValueError("--backgrounds mixes clips listed in a manifest; pass the manifest the shards were made from as --data.")
    folds, own = fold_backgrounds(data, backgrounds, val_fold, test_fold, scenes)
    scene_labels, scene_of = scenes or ([], None)
    train_backgrounds = sorted({f for fold in folds if fold not in (val_fold, test_fold) for f in own[fold]})
    settings = MixSettings(duration=clip_seconds, events=(1, 2), snr=tuple(snr), max_overlap=2, background_only=0.5)
    mixed = lambda split, files, train_mode: MixtureDataset(SoundscapeMixer(split, files, sample_rate, settings), frame_hop, train_mode,
                                                            seed, scene_of, scene_labels)
    batches = lambda dataset, size: DataLoader(dataset, batch_size=size, collate_fn=collate, num_workers=workers)
    training = mixed(train, train_backgrounds, True)
    tested = batches(mixed(test, own[test_fold], False), 32) if frame_hop else held_out(test, 32)  # weak clips have no frame targets
    return Splits(training, batches(mixed(val, own[val_fold], False), 32), tested, batches(training, 16),
                  tuning_soundscapes(data, sample_rate, val_fold, test_fold, seed, backgrounds, snr, scenes))
