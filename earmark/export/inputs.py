"""Real feature windows for parity checks and calibration: clips of a manifest, or generated test signals."""

from __future__ import annotations

import numpy as np

from earmark.audio.spec import FrontendSpec

INPUT_NAME = "features"  # the deployable model's one input tensor (ModelMetadata.input_name)


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
    """Features of the first ``limit`` clips of a manifest (or of WebDataset shards), and their labels."""
    from earmark.audio.sources import first_clips, open_data

    clips = first_clips(open_data(manifest_path), spec.sample_rate, limit)
    if not clips:
        raise ValueError(f"{manifest_path}: the calibration manifest has no clips; pass one with a few dozen representative clips.")
    return feature_batch(spec, frames, [wave for _, wave in clips]), [list(clip.labels) for clip, _ in clips]
