"""Soundscapes from what users have: clip-dataset events placed over background recordings, with strong labels.

Scaper-style and seeded: a soundscape of ``duration`` seconds holds a drawn number of events (each a
clip's active span, found by trimming quiet ends), at onsets drawn uniformly, at an SNR drawn from a
range, with at most ``max_overlap`` events sounding at once. SNR is the event's RMS over its active
span against the background excerpt's RMS, in dB. The strong labels are the placed spans, so an
event placed at t is labelled at t. Stretches without events, and soundscapes drawn with none,
are the negatives a detector needs; distractors (recordings of sounds outside the label set, placed
like events but never labelled) are the negatives that sound like something. Numpy only: the same
mixer runs in ``earmark data mix`` and inside training (one soundscape per item, seeded by (seed,
epoch, index)).
"""

from __future__ import annotations

import csv
import logging
import os
import zlib
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from earmark.audio.chain import check_stages, recording_chain
from earmark.audio.io import load_audio, resample
from earmark.audio.manifest import AUDIO_SUFFIXES, Clip, Manifest, clip_fold, read_manifest

Event = tuple[float, float, str]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MixSettings:
    """How soundscapes are drawn: length, event count range, SNR range (dB), overlap limit, negatives."""

    duration: float = 10.0
    events: tuple[int, int] = (1, 4)  # inclusive range of events per soundscape
    snr: tuple[float, float] = (0.0, 15.0)
    max_overlap: int = 1  # events sounding at the same time (1: none overlap)
    background_only: float = 0.1  # probability of a soundscape with no event at all
    trim_db: float = 30.0  # an event's active span: where its 10 ms RMS is within this of its loudest
    chain: tuple[str, ...] = ()  # recording-chain stages (audio.chain.STAGES) each event may pass through before mixing
    chain_p: float = 0.5  # probability of each of those stages per event
    distractors: tuple[int, int] = (0, 1)  # inclusive range of unlabelled events, when the mixer has distractor recordings

    def __post_init__(self):
        if (self.duration <= 0 or not 0 <= self.events[0] <= self.events[1] or not 0 <= self.distractors[0] <= self.distractors[1]
                or self.snr[0] > self.snr[1] or self.max_overlap < 1):
            raise ValueError(f"mix settings {self} are inconsistent; pass a positive duration, events and distractors LOW <= HIGH, "
                             "SNR LOW <= HIGH and an overlap limit of at least 1.")
        check_stages(self.chain)


@dataclass
class Soundscape:
    """One mixture: mono float32 audio, its strong labels sorted by onset, the background and the clips placed on it."""

    audio: np.ndarray
    events: list[Event]
    background: str
    sample_rate: int
    sources: list[str]  # ids of the clips placed, in placement order


def active_span(wave: np.ndarray, sample_rate: int, trim_db: float = 30.0) -> tuple[int, int]:
    """First and last sample of the part of ``wave`` within ``trim_db`` of its loudest 10 ms frame."""
    hop = max(1, sample_rate // 100)
    if wave.size < 2 * hop:
        return 0, wave.size
    frames = wave[: wave.size // hop * hop].reshape(-1, hop).astype(np.float64)
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    if rms.max() == 0:
        return 0, wave.size
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (-trim_db / 20))
    return int(loud[0] * hop), wave.size if loud[-1] == len(rms) - 1 else int((loud[-1] + 1) * hop)


def find_backgrounds(path: str | os.PathLike, what: str = "background recordings",
                     like: str = "ambience recordings") -> list[Path]:
    """Background recordings (or ``what`` else, such as distractors): every audio file under a folder, or the files a
    manifest lists (its labels unused)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    else:
        files = [c.path for c in read_manifest(path).clips]
    if not files:
        raise ValueError(f"{path}: holds no {what} ({', '.join(sorted(AUDIO_SUFFIXES))}); "
                         f"point it at a folder of {like} or a manifest listing them.")
    return files


def background_scenes(path: str | os.PathLike) -> tuple[list[str], dict[str, str]]:
    """The scene of every background recording: (scene labels, path -> scene) from a single-label manifest or a
    folder with a sub-folder per scene (``BG/park/a.wav``), for a student that learns scenes beside events."""
    manifest = read_manifest(Path(path))
    unlabelled = [c.id for c in manifest.clips if len(c.labels) != 1]
    if not manifest.clips or unlabelled:
        raise ValueError(f"{path}: --scenes needs one scene label per background recording ({len(unlabelled)} of "
                         f"{len(manifest.clips)} have none or several, e.g. {unlabelled[:3]}); pass a scene manifest "
                         "(ESC-50 or TAU style CSV) or a folder with a sub-folder per scene.")
    return manifest.labels.to_list(), {str(c.path): c.labels[0] for c in manifest.clips}


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0


def _concurrency(events: list[tuple[int, int]], start: int, end: int) -> int:
    """The most placed events sounding at once within [start, end)."""
    inside = [(max(a, start), min(b, end)) for a, b in events if a < end and b > start]
    edges = sorted([(a, 1) for a, _ in inside] + [(b, -1) for _, b in inside], key=lambda e: (e[0], e[1]))
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


def split_backgrounds(files: list[Path], folds: list[int], scenes: dict[str, str] | None = None) -> dict[int, list[Path]]:
    """Each fold's backgrounds, by a hash of the file name; all of them for every fold when there are fewer files than folds.

    With ``scenes`` (path -> scene) each scene is split on its own, so every fold hears every scene; a scene with fewer
    recordings than folds is heard by every fold (named in a warning: its held-out mixtures reuse training recordings).
    """
    if scenes is not None:
        groups: dict[str, list[Path]] = {}
        for f in files:
            groups.setdefault(scenes[str(f)], []).append(f)
        shared = sorted(scene for scene, members in groups.items() if len(members) < len(folds))
        if shared:
            log.warning("the scenes %s have fewer recordings than folds (%d), so validation and test mix them over the "
                        "training recordings too; add recordings for scene metrics on unheard ones", shared, len(folds))
        split = {fold: [] for fold in folds}
        for members in groups.values():  # dealt in hash order, so each fold gets one before any gets two
            ordered = sorted(members, key=lambda f: (zlib.crc32(f.name.encode()), f.name))
            for k, f in enumerate(ordered):
                for fold in (folds if len(members) < len(folds) else [folds[k % len(folds)]]):
                    split[fold].append(f)
        return split
    own = {fold: [f for f in files if folds[zlib.crc32(f.name.encode()) % len(folds)] == fold] for fold in folds}
    return {fold: own[fold] if len(files) >= len(folds) and own[fold] else list(files) for fold in folds}


class SoundscapeMixer:
    """Draws soundscapes from a clip manifest (single-, multi- or strong-labelled) over background recordings, with
    ``distractors`` (recordings of sounds outside the label set) placed unlabelled among the events when given."""

    def __init__(self, clips: Manifest, backgrounds: list[Path], sample_rate: int, settings: MixSettings = MixSettings(),
                 distractors: list[Path] = ()):
        if not clips.clips:
            raise ValueError(f"{clips.source or 'the clip manifest'}: has no clips to place; check the manifest and its folds.")
        if not backgrounds:
            raise ValueError("no background recordings to mix over; pass a folder or manifest of them (--backgrounds).")
        self.clips, self.backgrounds, self.sample_rate, self.settings = clips, list(backgrounds), sample_rate, settings
        self.distractors = list(distractors)
        self._events: dict[int, tuple[np.ndarray, list[Event]]] = {}
        self._distractors: dict[int, np.ndarray] = {}

    def with_settings(self, **changes) -> "SoundscapeMixer":
        """The same clips, backgrounds and distractors, other settings (e.g. the training window's duration)."""
        mixer = SoundscapeMixer(self.clips, self.backgrounds, self.sample_rate, replace(self.settings, **changes), self.distractors)
        mixer._events, mixer._distractors = self._events, self._distractors
        return mixer

    def event(self, index: int) -> tuple[np.ndarray, list[Event]]:
        """Clip ``index`` as an event: its active span and its labels over that span (strong labels kept as they are)."""
        if index not in self._events:
            clip = self.clips.clips[index]
            wave = load_audio(clip.path, self.sample_rate)
            if clip.events:  # a strong-labelled clip is placed whole with its own events
                self._events[index] = (wave, list(clip.events))
            else:
                start, end = active_span(wave, self.sample_rate, self.settings.trim_db)
                length = (end - start) / self.sample_rate
                self._events[index] = (wave[start:end], [(0.0, length, label) for label in clip.labels])
        return self._events[index]

    def distractor(self, index: int) -> np.ndarray:
        """Distractor recording ``index``: its active span, to be placed without a label."""
        if index not in self._distractors:
            wave = load_audio(self.distractors[index], self.sample_rate)
            start, end = active_span(wave, self.sample_rate, self.settings.trim_db)
            self._distractors[index] = wave[start:end]
        return self._distractors[index]

    def background(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """A random excerpt of a random background, looped when shorter than the soundscape."""
        path = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError) as err:
            raise ValueError(f"{path}: cannot be decoded as a background ({err}); convert it to WAV or FLAC.") from None
        need = int(np.ceil(self.settings.duration * info.samplerate)) + 1
        start = int(rng.integers(0, info.frames - need + 1)) if info.frames > need else 0
        wave, rate = sf.read(str(path), start=start, frames=need, dtype="float32", always_2d=True)
        if wave.shape[0] == 0:
            raise ValueError(f"{path}: contains no samples; remove it from the backgrounds.")
        wave = wave.mean(axis=1)
        if rate != self.sample_rate:
            wave = resample(wave, rate, self.sample_rate)
        n = int(round(self.settings.duration * self.sample_rate))
        return np.resize(wave, n).astype(np.float32), str(path)  # np.resize repeats a short recording

    def mix(self, rng: np.random.Generator, first: int | None = None) -> Soundscape:
        """One soundscape; ``first`` (a clip index) is the first event tried, so an epoch can visit every clip."""
        s, rate = self.settings, self.sample_rate
        audio, name = self.background(rng)
        noise = max(_rms(audio), 1e-4)
        count = 0 if rng.random() < s.background_only else int(rng.integers(s.events[0], s.events[1] + 1))
        placed: list[tuple[int, int]] = []
        labels: list[Event] = []
        sources: list[str] = []
        out = audio.copy()
        for k in range(count):
            index = first if (k == 0 and first is not None) else int(rng.integers(len(self.clips.clips)))
            wave, events = self.event(index)
            start, shift, length = self._place(out, wave, noise, placed, rng)
            if start is None:
                continue
            sources.append(self.clips.clips[index].id)
            for onset, offset, label in events:
                on, off = max(0.0, onset + shift) + start / rate, min(offset + shift, length / rate) + start / rate
                if off > on:
                    labels.append((round(on, 3), round(off, 3), label))
        if self.distractors:  # drawn after the events, so a mixer without distractors draws what it always drew
            for _ in range(int(rng.integers(s.distractors[0], s.distractors[1] + 1))):
                self._place(out, self.distractor(int(rng.integers(len(self.distractors)))), noise, placed, rng)
        peak = float(np.abs(out).max())
        if peak > 0.99:  # keep the sum inside [-1, 1] without changing the SNRs
            out *= 0.99 / peak
        return Soundscape(out.astype(np.float32), sorted(labels), name, rate, sources)

    def _place(self, out: np.ndarray, wave: np.ndarray, noise: float, placed: list[tuple[int, int]],
               rng: np.random.Generator) -> tuple[int | None, float, int]:
        """Add ``wave`` into ``out`` at a drawn SNR over ``noise`` (the background's RMS) and a drawn start within the
        overlap limit: (start sample or None when no start fits, the seconds cut from the wave's head, samples placed)."""
        s, rate, n = self.settings, self.sample_rate, out.size
        shift = 0.0
        if wave.size > n:  # longer than the soundscape: a random stretch of it fills the soundscape
            cut = int(rng.integers(0, wave.size - n + 1))
            wave, shift = wave[cut:cut + n], -cut / rate
        if s.chain:
            wave = recording_chain(wave, rate, rng, s.chain, s.chain_p)
        gain = noise * 10 ** (rng.uniform(*s.snr) / 20) / max(_rms(wave), 1e-9)  # SNR = 20 log10(rms_e / rms_b)
        for _ in range(20):  # placements tried before giving the event up
            start = int(rng.integers(0, n - wave.size + 1))
            if _concurrency(placed, start, start + wave.size) < s.max_overlap:
                break
        else:
            return None, shift, wave.size
        out[start:start + wave.size] += gain * wave
        placed.append((start, start + wave.size))
        return start, shift, wave.size


@dataclass(frozen=True)
class MixedSet:
    """What ``write_mixtures`` wrote: the strong-label TSV (a manifest the training verbs read) and the audio folder."""

    manifest: Path
    audio: Path
    soundscapes: int
    events: Counter


def write_mixtures(clips: str | os.PathLike, backgrounds: str | os.PathLike, out: str | os.PathLike, count: int,
                   settings: MixSettings = MixSettings(), seed: int = 0, sample_rate: int | None = None,
                   skip_bad: bool = False) -> MixedSet:
    """Write ``count`` soundscapes and ``soundscapes.tsv`` (filename, onset, offset, event_label, fold).

    Soundscape k takes fold k mod folds; its events come from clips of that fold only (their manifest
    fold, else the hash fold every split uses), so a held-out fold's mixtures hold no training clip.
    Backgrounds are split over folds the same way when there are at least as many as folds.
    ``skip_bad``: every clip is decoded first; bad rows and files that do not decode to finite audio are left out, each
    logged, instead of stopping the mix at the first one placed.
    """
    manifest = read_manifest(clips, skip_bad=skip_bad)
    if skip_bad:
        manifest = manifest.without_bad_files()
    rate = sample_rate or sf.info(str(manifest.clips[0].path)).samplerate
    folds = sorted({clip_fold(c) for c in manifest.clips})
    own = split_backgrounds(find_backgrounds(backgrounds), folds)
    mixers = {fold: SoundscapeMixer(manifest.filter(lambda c, f=fold: clip_fold(c) == f), own[fold], rate, settings) for fold in folds}
    root = Path(out)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rows, events = [], Counter()
    for k in range(count):
        fold = folds[k % len(folds)]
        scape = mixers[fold].mix(np.random.default_rng((seed, k)))
        name = f"mix-{k:05d}.wav"
        sf.write(root / "audio" / name, scape.audio, rate, subtype="PCM_16")
        rows += [(name, on, off, label, fold) for on, off, label in scape.events] or [(name, "", "", "", fold)]
        events.update(label for *_, label in scape.events)
    path = root / "soundscapes.tsv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["filename", "onset", "offset", "event_label", "fold"])
        writer.writerows(rows)
    return MixedSet(path, root / "audio", count, events)
