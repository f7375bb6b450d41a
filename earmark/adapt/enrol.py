"""Enrolment: a deployed detector's frame embeddings, a linear head fitted on the user's examples mixed over the site,
a threshold per label for a false-alarm budget chosen by cross-validation, one new deployable .onnx.

The examples are placed over the site recording at random SNRs (``earmark.audio.mixing``, as `data mix` and
training do) and heard frame by frame through the daemon's windows; the head learns each label's frames against
everything else (the site's frames, the other labels). The thresholds are chosen on what the head never trained on:
K folds of the examples (round robin per label) and K stretches of the site recording; each fold's head hears
mixtures of its held-out examples over its held-out stretch, and the stretch alone, through `listen`'s event decoder
(``earmark.adapt.operating``). The deployed head is then fitted on everything. Numpy and ONNX Runtime only.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import soundfile as sf

from earmark.adapt.examples import Enrolment
from earmark.adapt.graph import EMBEDDING, adapted_model, embedding_model
from earmark.adapt.head import LinearHead, fit_head
from earmark.adapt.operating import choose_thresholds
from earmark.audio.events import EventSettings, Scores
from earmark.audio.metadata import ModelMetadata
from earmark.audio.mixing import MixSettings, Soundscape, SoundscapeMixer
from earmark.runtime import classify_wave, load_backend


@dataclass(frozen=True)
class AdaptSettings:
    """How enrolment draws its mixtures and picks its operating point."""

    max_false_alarms: float = 60.0  # per hour of site audio, all labels together
    folds: int = 5  # at most; never more than the fewest examples of a label
    appearances: int = 8  # times each example is placed in training soundscapes
    soundscape_seconds: float = 10.0
    snr: tuple[float, float] = (0.0, 15.0)
    seed: int = 0


@dataclass(frozen=True)
class FinetuneSettings:
    """How long and how hard the student is fine-tuned."""

    steps: int = 3200  # fewer left the held-out packages underfit (docs/evaluation.md, "The fine-tune path")
    batch_size: int = 16
    lr: float = 3e-3  # the new label layers
    body_lr: float = 3e-3  # the body's layers; 0 freezes them (3e-4 measured worse, docs/evaluation.md)
    gain_db: float = 6.0  # each training mixture's level is moved by up to this many dB either way


class EmbeddingBackend:
    """A deployed model cut at its classifier's input: its "frame" output is one embedding per output frame, so the
    runtime's window plan gives each frame's embedding with its stream times (``Scores.probs`` holds the vector)."""

    chunked = False  # windowed models only (a stateful one has no classifier conv to cut at)

    def __init__(self, model_path: str | Path, threads: int = 1):
        import onnxruntime as ort

        base = load_backend(model_path, threads=threads)
        self.base_metadata = base.metadata
        self.base_graph = onnx.load(str(model_path))
        graph = embedding_model(self.base_graph, len(base.metadata.labels))
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.metadata = replace(base.metadata, outputs={"frame": EMBEDDING, "clip": EMBEDDING}, frame_hop_seconds=0.0)

    def run(self, features: np.ndarray) -> dict[str, np.ndarray]:
        (frames,) = self.session.run([EMBEDDING], {self.metadata.input_name: features})
        return {"frame": frames, "clip": frames.mean(axis=1)}

    def timeline(self, wave: np.ndarray, hop_seconds: float | None = None) -> list[Scores]:
        """Each output frame's embedding over ``wave`` (at the model's rate), windows every ``hop_seconds``."""
        return timeline(self, wave, hop_seconds)


def timeline(backend, wave: np.ndarray, hop_seconds: float | None = None) -> list[Scores]:
    """Each output frame's scores over ``wave`` (at the model's rate) as the daemon's windows give them, every ``hop_seconds``."""
    return [segment for window in classify_wave(backend, wave, hop_seconds) for segment in window.segments]


def frame_targets(frames: list[Scores], events: list[tuple[float, float, str]], labels: list[str]) -> np.ndarray:
    """(frames, labels) 1 where an event of that label covers at least half of the frame."""
    targets = np.zeros((len(frames), len(labels)), np.float32)
    starts, ends = np.array([f.start for f in frames]), np.array([f.end for f in frames])
    for onset, offset, label in events:
        overlap = np.clip(np.minimum(ends, offset) - np.maximum(starts, onset), 0, None)
        targets[overlap >= 0.5 * (ends - starts), labels.index(label)] = 1
    return targets


def _mixtures(enrolment: Enrolment, examples: list[int], stretches: list[Path], settings: AdaptSettings, count: int,
              seed: int) -> list[Soundscape]:
    """``count`` soundscapes of these examples over these site stretches, each example first in turn."""
    ids = {enrolment.examples.clips[i].id for i in examples}
    mixer = SoundscapeMixer(enrolment.examples.filter(lambda clip: clip.id in ids),
                            stretches, enrolment.sample_rate,
                            MixSettings(duration=settings.soundscape_seconds, events=(1, 3), snr=settings.snr, background_only=0.0))
    rng = np.random.default_rng(seed)
    return [mixer.mix(rng, first=k % len(mixer.clips.clips)) for k in range(count)]


def _alone(stretches: list[Path], sample_rate: int) -> list[Soundscape]:
    """The site stretches as soundscapes without events."""
    return [Soundscape(sf.read(str(path), dtype="float32")[0], [], str(path), sample_rate, []) for path in stretches]


def _fit(embedder: EmbeddingBackend, soundscapes: list[Soundscape], labels: list[str]) -> LinearHead:
    """The head fitted on these soundscapes' frames (windows side by side: each frame heard once)."""
    window = embedder.metadata.window_seconds
    xs, ys = [], []
    for scape in soundscapes:
        frames = embedder.timeline(scape.audio, hop_seconds=window)
        xs.append(np.stack([f.probs for f in frames]))
        ys.append(frame_targets(frames, scape.events, labels))
    return fit_head(np.concatenate(xs), np.concatenate(ys))


def _folds(enrolment: Enrolment, k: int) -> list[list[int]]:
    """Example indices per fold: each label's examples dealt round robin."""
    folds: list[list[int]] = [[] for _ in range(k)]
    seen: dict[str, int] = {}
    for index, clip in enumerate(enrolment.examples.clips):
        label = clip.labels[0]
        folds[seen.get(label, 0) % k].append(index)
        seen[label] = seen.get(label, 0) + 1
    return folds


@dataclass
class Adapted:
    """The enrolled model's head, thresholds, its metadata, what cross-validation measured, and how long it took."""

    head: LinearHead
    metadata: ModelMetadata
    validation: dict
    seconds: float


def adapt(model_path: str | Path, enrolment: Enrolment, events: EventSettings, settings: AdaptSettings = AdaptSettings(),
          threads: int = 1) -> Adapted:
    """Fit a head for ``enrolment``'s labels on ``model_path``'s embeddings and choose its thresholds (module docstring)."""
    started = time.perf_counter()
    embedder = EmbeddingBackend(model_path, threads)
    base, labels = embedder.base_metadata, enrolment.labels
    k = min(settings.folds, min(enrolment.counts().values()))
    folds = _folds(enrolment, k)
    with tempfile.TemporaryDirectory(prefix="earmark-adapt-") as tmp:
        stretches = []
        for i, part in enumerate(np.array_split(enrolment.background, k)):
            stretches.append(Path(tmp) / f"site-{i}.wav")
            sf.write(stretches[i], part, enrolment.sample_rate)
        per_example = lambda n: math.ceil(settings.appearances * n / 2)  # soundscapes hold 2 events on average
        mixtures, site = [], []
        everything = list(range(len(enrolment.examples.clips)))
        for i, held in enumerate(folds):
            train, rest = [j for j in everything if j not in held], stretches[:i] + stretches[i + 1:]
            head = _fit(embedder, _mixtures(enrolment, train, rest, settings, per_example(len(train)), settings.seed + i)
                        + _alone(rest, enrolment.sample_rate), labels)
            heard = lambda scape: [Scores(f.start, f.end, head.scores(f.probs)) for f in embedder.timeline(scape.audio)]
            for scape in _mixtures(enrolment, held, [stretches[i]], settings, len(held), settings.seed + 1000 + i):
                mixtures.append((heard(scape), scape.events, scape.audio.size / scape.sample_rate))
            site += [(heard(scape), scape.audio.size / scape.sample_rate) for scape in _alone([stretches[i]], enrolment.sample_rate)]
        point = choose_thresholds(mixtures, site, labels, replace(events, thresholds={}, offset_lag=0.0), settings.max_false_alarms)
        head = _fit(embedder, _mixtures(enrolment, everything, stretches, settings, per_example(len(everything)), settings.seed + 2000)
                    + _alone(stretches, enrolment.sample_rate), labels)
    last = mixtures[-1][0][-1]
    frame_hop = last.end - last.start
    validation = {"folds": k, **dataclasses.asdict(point)}
    seconds = time.perf_counter() - started
    metadata = replace(
        base, task="frame", objective="detect", outputs={"frame": "enrolled_frame_probs", "clip": "enrolled_clip_probs"},
        scene_labels=(), frame_hop_seconds=frame_hop)
    base_record = {"model_name": base.model_name, "labels": list(base.labels), "precision": base.precision,
                   "source_checkpoint_sha256": base.source_checkpoint_sha256}
    metadata = enrolled_metadata(metadata, labels, point.thresholds, events, adaptation_record(
        base_record, enrolment, f"linear on {head.weight.shape[0]}-dim frame embeddings", dataclasses.asdict(settings), validation, seconds))
    return Adapted(head, metadata, validation, seconds)


def adaptation_record(base: dict, enrolment: Enrolment, how: str, settings: dict, validation: dict, seconds: float) -> dict:
    """What an adapted model's metadata says it was adapted from and with (``adaptation``)."""
    return {"base": base, "examples": enrolment.counts(), "example_seconds": round(enrolment.example_seconds, 2),
            "background_seconds": round(enrolment.background_seconds, 2), "head": how,
            "settings": settings, "validation": validation, "seconds": round(seconds, 1)}


def enrolled_metadata(metadata: ModelMetadata, labels: list[str], thresholds: dict[str, float], events: EventSettings,
                      adaptation: dict) -> ModelMetadata:
    """``metadata`` for the enrolled labels at their ``thresholds``, with the post-processing they were chosen under."""
    return replace(metadata, labels=tuple(labels), thresholds={label: thresholds[label] for label in labels},
                   default_threshold=max(thresholds.values()),
                   postprocess={"median": float(events.median), "min_duration": events.min_duration, "max_gap": events.max_gap},
                   model_name=f"{adaptation['base']['model_name']}+adapted", adaptation=adaptation)


def write_adapted(model_path: str | Path, adapted: Adapted, out: str | Path) -> Path:
    """The deployable .onnx: the base model's body, the enrolled head, the adapted metadata."""
    graph = onnx.load(str(model_path))
    out = Path(out)
    onnx.save(adapted_model(graph, len(adapted.metadata.adaptation["base"]["labels"]), adapted.head.weight,
                            adapted.head.bias, adapted.metadata), str(out))
    return out
