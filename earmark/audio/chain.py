"""A random recording chain for an event before it is mixed: what changes when the same sound comes from another source.

Sound-effect packages differ in how their sounds were made, not in what the sounds are: one stores 11-kHz files (no
energy above 5.5 kHz), another was equalised or recorded in a room. A detector that learns those traits names the
package, not the sound. Each stage below is applied to an event with probability ``p``, seeded by the mixer's
generator, so a run stays reproducible. Numpy only (the mixer runs in DataLoader workers and in `earmark data mix`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["STAGES", "band_limit", "check_stages", "random_eq", "recording_chain", "room"]

SOURCE_RATES = (8000, 11025, 16000, 22050)  # sample rates sound-effect packages ship besides 44.1 and 48 kHz
EQ_DB = 6.0  # largest boost or cut of the random equaliser
RT60 = (0.15, 0.8)  # reverberation times of the simulated rooms, seconds


def band_limit(wave: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """As if the sound had been stored at a lower sample rate: nothing above half a rate drawn from SOURCE_RATES.

    The cut-off rolls off over its top 10% (a raised cosine), as a resampler's anti-aliasing filter does.
    """
    cutoff = float(rng.choice(SOURCE_RATES)) / 2
    if cutoff >= rate / 2:
        return wave
    freqs = np.fft.rfftfreq(wave.size, 1 / rate)
    knee = 0.9 * cutoff
    gain = np.clip((cutoff - freqs) / (cutoff - knee), 0.0, 1.0)
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)
    return np.fft.irfft(np.fft.rfft(wave) * gain, wave.size).astype(np.float32)


def random_eq(wave: np.ndarray, rate: int, rng: np.random.Generator, max_db: float = EQ_DB) -> np.ndarray:
    """A smooth random equaliser: gains drawn in [-max_db, max_db] at five log-spaced frequencies from 100 Hz to Nyquist,
    interpolated over log frequency (a microphone's or a mastering chain's colour)."""
    points = np.geomspace(100.0, rate / 2, 5)
    freqs = np.fft.rfftfreq(wave.size, 1 / rate)
    db = np.interp(np.log(np.maximum(freqs, 1.0)), np.log(points), rng.uniform(-max_db, max_db, points.size))
    return np.fft.irfft(np.fft.rfft(wave) * 10 ** (db / 20), wave.size).astype(np.float32)


def room(wave: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Reverberation of a simulated room: a direct path plus exponentially decaying noise (RT60 drawn from RT60), at a
    direct-to-reverberant ratio drawn in [0, 12] dB; the tail past the event's end is cut, so its labels still hold."""
    rt60 = rng.uniform(*RT60)
    t = np.arange(int(rt60 * rate)) / rate
    response = rng.standard_normal(t.size) * 10 ** (-3 * t / rt60)  # -60 dB at t = RT60
    response[0] = 0.0
    response *= 10 ** (-rng.uniform(0.0, 12.0) / 20) / np.sqrt(np.sum(response**2) + 1e-12)  # reverberant energy
    response[0] = 1.0  # the direct path
    n = wave.size + response.size - 1
    return np.fft.irfft(np.fft.rfft(wave, n) * np.fft.rfft(response, n), n)[: wave.size].astype(np.float32)


STAGES = {"bandlimit": band_limit, "eq": random_eq, "reverb": room}  # name -> stage, in the order a chain applies them


def check_stages(stages: tuple[str, ...]) -> None:
    """Refuse stage names that are not in STAGES, in one sentence."""
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"recording-chain stages {unknown} are unknown; choose from {', '.join(STAGES)}.")


def recording_chain(wave: np.ndarray, rate: int, rng: np.random.Generator, stages: tuple[str, ...], p: float = 0.5) -> np.ndarray:
    """Each of ``stages`` (names of STAGES, applied in STAGES' order) with probability ``p``."""
    check_stages(stages)
    for name, stage in STAGES.items():
        if name in stages and rng.random() < p:
            wave = stage(wave, rate, rng)
    return wave
