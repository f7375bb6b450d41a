"""The user's enrolment material, read and checked: labelled examples (a folder per label or a manifest) and a
recording of the site with nothing happening. Each problem is one sentence that says what to do."""

from __future__ import annotations

import difflib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earmark.audio.io import load_audio
from earmark.audio import Manifest, active_span, find_backgrounds, read_manifest

MIN_EXAMPLES = 3  # per label: fewer leave no held-out example to tune the thresholds on
MIN_EXAMPLE_SECONDS = 0.05  # a sound shorter than this (after trimming quiet ends) is a click, not an example
MIN_BACKGROUND_SECONDS = 30.0
SILENCE_DBFS = -60.0  # an example whose loudest 10 ms stays below this holds nothing to learn


@dataclass
class Enrolment:
    """Checked material at the model's sample rate: the examples' manifest, the site recording, and a summary."""

    examples: Manifest
    labels: list[str]
    background: np.ndarray
    sample_rate: int
    example_seconds: float

    @property
    def background_seconds(self) -> float:
        return self.background.size / self.sample_rate

    def counts(self) -> dict[str, int]:
        return dict(Counter(label for clip in self.examples.clips for label in clip.labels))


def _peak_dbfs(wave: np.ndarray, sample_rate: int) -> float:
    hop = max(1, sample_rate // 100)
    frames = wave[: wave.size // hop * hop].reshape(-1, hop)
    rms = float(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)).max()) if frames.size else 0.0
    return 20 * np.log10(max(rms, 1e-12))


def check_labels(labels: list[str], known: tuple[str, ...], new_labels: bool) -> None:
    """A label the model lacks is refused unless ``new_labels`` (a typo would otherwise train a new sound)."""
    unknown = [label for label in labels if label not in known]
    if unknown and not new_labels:
        near = {label: difflib.get_close_matches(label, known, n=1) for label in unknown}
        hints = "; ".join(f"{label!r} (did you mean {near[label][0]!r}?)" if near[label] else repr(label) for label in unknown)
        raise ValueError(f"the model has no label {hints}: rename the examples' folders to its labels, "
                         "or pass --new-labels to teach them as new sounds.")


def read_examples(path: str | os.PathLike, sample_rate: int, known: tuple[str, ...], new_labels: bool) -> tuple[Manifest, float]:
    """The examples' manifest and their total seconds; too few examples, unknown labels (``check_labels``), and too
    short or silent examples are refused."""
    manifest = read_manifest(path)
    if not manifest.clips:
        raise ValueError(f"{path}: holds no examples; put each label's recordings in a folder named after it.")
    counts = Counter(label for clip in manifest.clips for label in clip.labels)
    few = sorted(label for label, n in counts.items() if n < MIN_EXAMPLES)
    if few:
        raise ValueError(f"{path}: {', '.join(f'{label!r} has {counts[label]}' for label in few)} example(s); "
                         f"record at least {MIN_EXAMPLES} of each label (5 or more works better).")
    check_labels(sorted(counts), known, new_labels)
    seconds = 0.0
    for clip in manifest.clips:
        wave = load_audio(clip.path, sample_rate)
        if _peak_dbfs(wave, sample_rate) < SILENCE_DBFS:
            raise ValueError(f"{clip.path}: is silent (loudest 10 ms below {SILENCE_DBFS:g} dBFS); record the sound again "
                             "closer to the microphone, or remove the file.")
        start, end = active_span(wave, sample_rate)
        if (end - start) / sample_rate < MIN_EXAMPLE_SECONDS:
            raise ValueError(f"{clip.path}: its sound lasts {(end - start) / sample_rate:.2f} s, under {MIN_EXAMPLE_SECONDS} s; "
                             "record a longer example, or remove the file.")
        seconds += wave.size / sample_rate
    return manifest, seconds


def read_background(paths: list[str | os.PathLike], sample_rate: int) -> np.ndarray:
    """The site recordings (files or folders of them) end to end; under MIN_BACKGROUND_SECONDS is refused."""
    files = []
    for path in map(Path, paths):
        files += find_backgrounds(path) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"{', '.join(map(str, paths))}: no recordings of the site; record one with "
                         "`earmark listen MODEL --record-background 120 --record-to site.wav`.")
    wave = np.concatenate([load_audio(f, sample_rate) for f in files])
    if wave.size < MIN_BACKGROUND_SECONDS * sample_rate:
        raise ValueError(f"the site recording lasts {wave.size / sample_rate:.0f} s, under {MIN_BACKGROUND_SECONDS:g} s; record "
                         "at least 2 minutes of the site with nothing happening.")
    return wave


def read_enrolment(examples: str | os.PathLike, background: list[str | os.PathLike], sample_rate: int, known: tuple[str, ...],
                   new_labels: bool) -> Enrolment:
    """Read and check everything `earmark adapt` learns from."""
    manifest, seconds = read_examples(examples, sample_rate, known, new_labels)
    labels = sorted({label for clip in manifest.clips for label in clip.labels})
    return Enrolment(manifest, labels, read_background(background, sample_rate), sample_rate, seconds)
