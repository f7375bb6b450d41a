"""What a run trains, validates, tests, calibrates and tunes its event thresholds on, split by fold.

With background recordings, training hears clips mixed afresh over them every epoch (``MixtureDataset``), and the
validation split is heard as soundscapes whose strong labels tune the event thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np
from torch.utils.data import DataLoader, Dataset

from earmark.audio.datasets_torch import collate
from earmark.audio.io import load_audio
from earmark.audio.manifest import Manifest, clip_fold
from earmark.audio.mixing import MixSettings, Soundscape, SoundscapeMixer, find_backgrounds, split_backgrounds
from earmark.audio.mixture_dataset import MixtureDataset
from earmark.audio.sources import DataSource, eval_loader, train_dataset


def validation_soundscapes(val: Manifest, backgrounds: list[Path], sample_rate: int, snr: tuple[float, float],
                           seed: int = 0, distractors: list[Path] = ()) -> list[Soundscape]:
    """Soundscapes to tune on: the split itself when it is strong-labelled, else mixtures of its clips over ``backgrounds``
    (with ``distractors`` placed unlabelled in half of them, so thresholds are set against sounds outside the label set)."""
    if val.task == "frame":
        return [Soundscape(load_audio(c.path, sample_rate), list(c.events), "", sample_rate, []) for c in val.clips]
    if not backgrounds or not val.clips:
        return []
    mixer = SoundscapeMixer(val, backgrounds, sample_rate, MixSettings(snr=tuple(snr)), distractors)  # 10 s, 1-4 events, some without
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
                       snr: tuple[float, float] = (0.0, 15.0), scenes: tuple[list[str], dict[str, str]] | None = None,
                       distractors: list[Path] = ()) -> list[Soundscape]:
    """The validation soundscapes that `make_splits` gives a run with these settings (event thresholds are tuned on them)."""
    _, val, _ = data.train_val_test(val_fold, test_fold)
    if not isinstance(val, Manifest):
        return []
    own = fold_backgrounds(data, backgrounds, val_fold, test_fold, scenes)[1][val_fold] if backgrounds else []
    return validation_soundscapes(val, own, sample_rate, snr, seed, distractors)


def make_splits(data: DataSource, objective: str, sample_rate: int, clip_seconds: float, frame_hop: float | None,
                val_fold: int, test_fold: int, batch_size: int, seed: int = 0, backgrounds: str = "",
                snr: tuple[float, float] = (0.0, 15.0), workers: int = 0,
                scenes: tuple[list[str], dict[str, str]] | None = None, chain: tuple[str, ...] = (),
                distractors: list[Path] = ()) -> Splits:
    """Train / validation / test data by fold; with ``backgrounds``, training and validation hear the clips mixed over them.

    Training mixtures are window-long, new every epoch, 1-2 events, half of them background only (on bench_sed's
    real split, 30 epochs, one seed, the test fold's frame mAP was 52% against 40% with a fifth). The backgrounds
    are split by fold like the clips, so validation mixes held-out clips over held-out recordings where there are
    enough of them; so does test for frame models (a weak clip has no frame targets), while a clip model's test is
    the held-out clips as they are. With ``scenes`` (``audio.background_scenes`` of the backgrounds: the scene labels
    and each recording's scene) every mixture item also carries its background's scene. With ``chain`` (names of
    ``audio.chain.STAGES``) each event of a training mixture may pass through a random recording chain first. With
    ``distractors`` (recordings of sounds outside the label set) half the training and tuning mixtures also hold one,
    unlabelled (validation, which picks the best checkpoint, hears the classes only).
    """
    train, val, test = data.train_val_test(val_fold, test_fold)
    held_out = lambda split, size: eval_loader(split, sample_rate, clip_seconds, size, frame_hop, workers)
    if chain and not backgrounds:
        raise ValueError("--source-chain passes each event through a recording chain before it is mixed; pass --backgrounds "
                         "to train on mixtures.")
    if distractors and not backgrounds:
        raise ValueError("--distractors places sounds outside the label set in the training mixtures; pass --backgrounds "
                         "to train on mixtures.")
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
    trained = replace(settings, chain=tuple(chain))  # validation and tuning hear the clips as they are
    mixer = lambda split, files, train_mode: (SoundscapeMixer(split, files, sample_rate, trained, distractors) if train_mode
                                              else SoundscapeMixer(split, files, sample_rate, settings))
    mixed = lambda split, files, train_mode: MixtureDataset(mixer(split, files, train_mode), frame_hop, train_mode, seed, scene_of, scene_labels)
    batches = lambda dataset, size: DataLoader(dataset, batch_size=size, collate_fn=collate, num_workers=workers)
    training = mixed(train, train_backgrounds, True)
    tested = batches(mixed(test, own[test_fold], False), 32) if frame_hop else held_out(test, 32)  # weak clips have no frame targets
    return Splits(training, batches(mixed(val, own[val_fold], False), 32), tested, batches(training, 16),
                  tuning_soundscapes(data, sample_rate, val_fold, test_fold, seed, backgrounds, snr, scenes, distractors))
