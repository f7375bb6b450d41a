"""A deterministic, procedural demo dataset: 8 event recipes over 4 scene backgrounds, no downloads.

``synthesize(out)`` writes 32 kHz mono WAVs under ``out/audio/`` and three manifests: ``clips.csv``
(ESC-50 style, 1 s event clips in 5 folds), ``soundscapes.tsv`` (DESED strong labels of 10 s
soundscapes) and ``scenes.tsv`` (TAU style, the soundscapes' scene labels); and event-free scene
recordings under ``out/backgrounds/``, what detectors are trained to ignore (``--backgrounds``). Recipes overlap on
purpose (tones of near pitch, vibrato in two classes) and SNRs go down to 3 dB, so a tiny model has
something to learn.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

SAMPLE_RATE = 32000
Rng = np.random.Generator


def _t(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE


def _envelope(n: int, attack: float = 0.005, release: float = 0.02) -> np.ndarray:
    a, r = max(int(attack * SAMPLE_RATE), 1), max(int(release * SAMPLE_RATE), 1)
    env = np.ones(n)
    env[:a] = np.linspace(0, 1, min(a, n))[: min(a, n)] if n >= a else np.linspace(0, 1, n)
    env[-r:] *= np.linspace(1, 0, min(r, n))
    return env


def _shape(noise: np.ndarray, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Filter by multiplying the spectrum with ``gain(frequency_hz)``."""
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(noise.size, 1 / SAMPLE_RATE)
    out = np.fft.irfft(spectrum * gain(freqs), n=noise.size)
    return out / (np.abs(out).max() + 1e-9)


def beep(rng: Rng) -> np.ndarray:
    f, on, gap = rng.uniform(800, 1600), rng.uniform(0.08, 0.18), rng.uniform(0.05, 0.12)
    tone = np.sin(2 * np.pi * f * _t(on)) * _envelope(int(on * SAMPLE_RATE))
    silence = np.zeros(int(gap * SAMPLE_RATE))
    return np.concatenate([np.concatenate([tone, silence]) for _ in range(rng.integers(2, 4))])[: -silence.size]


def chirp(rng: Rng) -> np.ndarray:
    dur, f0 = rng.uniform(0.25, 0.55), rng.uniform(400, 900)
    f1 = f0 * rng.uniform(3, 6)
    t = _t(dur)
    return np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * dur))) * _envelope(t.size)


def siren(rng: Rng) -> np.ndarray:
    dur, fc, depth, rate = rng.uniform(0.6, 0.9), rng.uniform(600, 1100), rng.uniform(150, 300), rng.uniform(2, 5)
    t = _t(dur)
    phase = 2 * np.pi * fc * t - depth / rate * np.cos(2 * np.pi * rate * t)
    return np.sin(phase) * _envelope(t.size, 0.03, 0.05)


def knock(rng: Rng) -> np.ndarray:
    f, spacing = rng.uniform(150, 400), rng.uniform(0.08, 0.16)
    hit = np.sin(2 * np.pi * f * _t(0.06)) * np.exp(-_t(0.06) * 70)
    out = np.zeros(int((spacing * 5 + 0.06) * SAMPLE_RATE))
    for k in range(rng.integers(3, 6)):
        start = int(k * spacing * SAMPLE_RATE)
        out[start:start + hit.size] += hit * rng.uniform(0.6, 1.0)
    return out[: int((spacing * (k + 1)) * SAMPLE_RATE) + hit.size]


def alarm(rng: Rng) -> np.ndarray:
    dur, f = rng.uniform(0.5, 0.8), rng.uniform(300, 600)
    t = _t(dur)
    stack = sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 3, 5, 7, 9))
    return stack * (0.5 + 0.5 * np.sign(np.sin(2 * np.pi * rng.uniform(6, 10) * t))) * _envelope(t.size)


def whistle(rng: Rng) -> np.ndarray:
    dur, f = rng.uniform(0.35, 0.75), rng.uniform(1500, 3500)
    t = _t(dur)
    vibrato = rng.uniform(20, 80) / 6 * np.sin(2 * np.pi * 6 * t)
    return np.sin(2 * np.pi * f * t + vibrato) * _envelope(t.size, 0.04, 0.06)


def burst(rng: Rng) -> np.ndarray:
    dur, lo = rng.uniform(0.1, 0.3), rng.uniform(2000, 4000)
    noise = _shape(rng.standard_normal(int(dur * SAMPLE_RATE)), lambda f: ((f > lo) & (f < lo * 1.8)).astype(float))
    return noise * _envelope(noise.size, 0.002, 0.03)


def bell(rng: Rng) -> np.ndarray:
    f, t = rng.uniform(400, 900), _t(rng.uniform(0.6, 0.9))
    partials = sum(a * np.sin(2 * np.pi * f * r * t) * np.exp(-t * d) for r, a, d in ((1, 1, 4), (2.76, 0.6, 6), (5.4, 0.4, 9), (8.93, 0.25, 12)))
    return partials * _envelope(t.size, 0.002, 0.02)


EVENTS: dict[str, Callable[[Rng], np.ndarray]] = {
    "alarm": alarm, "beep": beep, "bell": bell, "burst": burst, "chirp": chirp, "knock": knock, "siren": siren, "whistle": whistle,
}


def street(rng: Rng, n: int) -> np.ndarray:
    rumble = _shape(rng.standard_normal(n), lambda f: 1 / np.maximum(f, 20) ** 1.0)
    return rumble + 0.3 * np.sin(2 * np.pi * rng.uniform(60, 110) * np.arange(n) / SAMPLE_RATE) * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * np.arange(n) / SAMPLE_RATE))


def office(rng: Rng, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * 50 * h * t) / h for h in (1, 2, 3))
    return 0.4 * hum + 0.5 * rng.standard_normal(n) / 3


def rain(rng: Rng, n: int) -> np.ndarray:
    drops = (rng.random(n) < 0.01) * rng.standard_normal(n)
    return _shape(drops + 0.3 * rng.standard_normal(n), lambda f: np.clip(f / 2000, 0, 1))


def cafe(rng: Rng, n: int) -> np.ndarray:
    voices = np.zeros(n)
    t = np.arange(n) / SAMPLE_RATE
    for _ in range(4):
        period = int(SAMPLE_RATE / rng.uniform(90, 220))
        pulses = (np.arange(n) % period == 0).astype(float)
        syllables = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)), 0, None)
        voices += pulses * syllables
    formants = lambda f: sum(np.exp(-((f - c) / 150) ** 2) for c in (500, 1100, 2400))
    return _shape(voices, formants)


SCENES: dict[str, Callable[[Rng, int], np.ndarray]] = {"cafe": cafe, "office": office, "rain": rain, "street": street}


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-9)


def _mix(background: np.ndarray, event: np.ndarray, start: int, snr_db: float) -> np.ndarray:
    """Add ``event`` at ``start`` so its RMS is ``snr_db`` above the background's."""
    event = _normalise(event) * 10 ** (snr_db / 20)
    out = background.copy()
    end = min(start + event.size, out.size)
    out[start:end] += event[: end - start]
    return out


def _write(path: Path, wave: np.ndarray, rng: Rng) -> None:
    peak = np.abs(wave).max() + 1e-9
    sf.write(path, (wave / peak * rng.uniform(0.2, 0.8)).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")


@dataclass(frozen=True)
class SynthPaths:
    """What ``synthesize`` wrote."""

    root: Path
    clips_csv: Path
    soundscapes_tsv: Path
    scenes_tsv: Path
    backgrounds: Path
    backgrounds_tsv: Path  # the backgrounds' scenes (filename, scene_label): `distill --scenes --backgrounds` reads it


TEST_FOLD = 5  # the fold the training verbs hold out for testing by default (--test-fold)


def _write_clip(path: Path, name: str, n_clip: int, rng: Rng) -> None:
    """One event clip: the event at a random place over a random scene, 3-15 dB above it."""
    scenes = sorted(SCENES)
    event = EVENTS[name](rng)[:n_clip]
    background = _normalise(SCENES[scenes[rng.integers(len(scenes))]](rng, n_clip))
    _write(path, _mix(background, event, int(rng.integers(0, n_clip - event.size + 1)), rng.uniform(3, 15)), rng)


def synthesize(out: str | os.PathLike, seed: int = 0, clips_per_class: int = 40, soundscapes: int = 20,
               clip_seconds: float = 1.0, soundscape_seconds: float = 10.0, backgrounds: int = 8,
               extra_test_clips: int = 0) -> SynthPaths:
    """Write the demo dataset under ``out`` (same seed, same bytes).

    ``clips_per_class`` clips of each class spread over folds 1-5; ``extra_test_clips`` more of each class go to the
    test fold only (a larger test set without more training data), drawn from their own generator so the rest of the
    dataset is the same with or without them.
    """
    root = Path(out)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names, scenes = sorted(EVENTS), sorted(SCENES)
    clip_rows = []
    n_clip = int(clip_seconds * SAMPLE_RATE)
    for k in range(clips_per_class):
        for target, name in enumerate(names):
            filename = f"clip-{name}-{k:03d}.wav"
            _write_clip(root / "audio" / filename, name, n_clip, rng)
            clip_rows.append((filename, k % 5 + 1, target, name))
    test_rng = np.random.default_rng((seed, TEST_FOLD))
    for k in range(clips_per_class, clips_per_class + extra_test_clips):
        for target, name in enumerate(names):
            filename = f"clip-{name}-{k:03d}.wav"
            _write_clip(root / "audio" / filename, name, n_clip, test_rng)
            clip_rows.append((filename, TEST_FOLD, target, name))
    with open(root / "clips.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "fold", "target", "category"])
        writer.writerows(clip_rows)
    event_rows, scene_rows = [], []
    n_scape = int(soundscape_seconds * SAMPLE_RATE)
    for k in range(soundscapes):
        scene = scenes[k % len(scenes)]
        wave = _normalise(SCENES[scene](rng, n_scape))
        filename = f"scape-{k:03d}.wav"
        slots = rng.permutation(int(soundscape_seconds) - 1)[: rng.integers(1, 5)]
        events = []
        for slot in sorted(slots):
            name = names[rng.integers(len(names))]
            event = EVENTS[name](rng)
            start = int((slot + rng.uniform(0, 0.2)) * SAMPLE_RATE)
            wave = _mix(wave, event, start, rng.uniform(3, 12))
            events.append((filename, round(start / SAMPLE_RATE, 3), round((start + event.size) / SAMPLE_RATE, 3), name))
        _write(root / "audio" / filename, wave, rng)
        event_rows += events
        scene_rows.append((f"audio/{filename}", scene))
    with open(root / "soundscapes.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["filename", "onset", "offset", "event_label"])
        writer.writerows(event_rows)
    with open(root / "scenes.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["filename", "scene_label"])
        writer.writerows(scene_rows)
    (root / "backgrounds").mkdir(exist_ok=True)
    background_rows = []
    for k in range(backgrounds):  # drawn last: the clips and soundscapes do not depend on how many there are
        scene = scenes[k % len(scenes)]
        _write(root / "backgrounds" / f"{scene}-{k:03d}.wav", _normalise(SCENES[scene](rng, n_scape)), rng)
        background_rows.append((f"backgrounds/{scene}-{k:03d}.wav", scene))
    with open(root / "backgrounds.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["filename", "scene_label"])
        writer.writerows(background_rows)
    return SynthPaths(root, root / "clips.csv", root / "soundscapes.tsv", root / "scenes.tsv", root / "backgrounds",
                      root / "backgrounds.tsv")
