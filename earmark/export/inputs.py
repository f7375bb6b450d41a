"""Real feature windows for parity checks and calibration: clips of a manifest, or generated test signals."""

from __future__ import annotations

import numpy as np

from earmark.audio.spec import FrontendSpec


def fit_frames(features: np.ndarray, frames: int) -> np.ndarray:
    """Crop or zero-pad (in the normalised domain) the time axis of (n_mels, T) features to ``frames``."""
    if features.shape[1] >= frames:
        return features[:, :frames]
    return np.pad(features, ((0, 0), (0, frames - features.shape[1])))


def test_signals(sample_rate: int, seconds: float, count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Noise, tones, chirps, clicks and silence: signals whose features cover what a microphone hears."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    makers = [
        lambda: 0.1 * rng.standard_normal(t.size),
        lambda: 0.5 * np.sin(2 * np.pi * rng.uniform(200, 4000) * t),
        lambda: 0.4 * np.sin(2 * np.pi * (300 + 3000 * t / seconds) * t),
        lambda: 0.8 * (rng.random(t.size) < 0.002) * rng.choice([-1.0, 1.0], t.size),
        lambda: np.zeros(t.size),
        lambda: np.clip(2.0 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size), -1, 1),
    ]
    return [makers[i % len(makers)]().astype(np.float32) for i in range(count)]


def feature_batch(spec: FrontendSpec, frames: int, waves: list[np.ndarray]) -> np.ndarray:
    """(N, 1, n_mels, frames) float32 features of ``waves`` through the runtime's numpy frontend."""
    from earmark.audio.features import compute_features

    return np.stack([fit_frames(compute_features(spec, w), frames)[None] for w in waves]).astype(np.float32)


def manifest_features(spec: FrontendSpec, frames: int, manifest_path: str, limit: int = 64) -> tuple[np.ndarray, list[list[str]]]:
    """Features of the first ``limit`` clips of a manifest, and their labels."""
    from earmark.audio.io import load_audio
    from earmark.audio.manifest import read_manifest

    manifest = read_manifest(manifest_path)
    clips = manifest.clips[:limit]
    if not clips:
        raise ValueError(f"{manifest_path}: the calibration manifest has no clips; pass one with a few dozen representative clips.")
    waves = [load_audio(c.path, spec.sample_rate) for c in clips]
    return feature_batch(spec, frames, waves), [list(c.labels) for c in clips]
