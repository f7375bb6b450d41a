"""Test signals covering what a microphone hears: noise, tones, silence, clipping, speech-like pulses."""

import numpy as np


def make_signal(kind: str, seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    if kind == "noise":
        x = 0.1 * rng.standard_normal(n)
    elif kind == "tones":
        x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3100 * t)
    elif kind == "silence":
        x = np.zeros(n)
    elif kind == "clipped":
        x = np.clip(3.0 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(n), -1.0, 1.0)
    elif kind == "speech":  # a 120 Hz glottal pulse train through two formant resonators
        pulses = (np.arange(n) % int(sample_rate / 120) == 0).astype(float)
        x = pulses
        for formant, bw in ((700, 130), (1220, 70)):
            r = np.exp(-np.pi * bw / sample_rate)
            a1, a2 = -2 * r * np.cos(2 * np.pi * formant / sample_rate), r * r
            y = np.zeros(n)
            for i in range(n):
                y[i] = x[i] - a1 * (y[i - 1] if i > 0 else 0) - a2 * (y[i - 2] if i > 1 else 0)
            x = y
        x = 0.5 * x / np.abs(x).max() * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    else:
        raise ValueError(kind)
    return x.astype(np.float32)


KINDS = ["noise", "tones", "silence", "clipped", "speech"]
