"""Soundscapes with strong labels through `listen`'s own pipeline; event F1, PSDS, false alarms and timelines."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import soundfile as sf

from earmark.audio.manifest import Manifest
from earmark.audio.spec import FrontendSpec
from earmark.evaluation.events import ScoreTrack, detection_latency, event_metrics, false_alarms, psds, segment_map
from earmark.runtime.daemon import Listener
from earmark.runtime.model import load_backend
from earmark.runtime.postprocess import EventSettings
from earmark.runtime.sources import FileSource
from earmark.runtime.stream import StreamingClassifier
from earmark.runtime.timeline import Timeline, plot_timeline

logger = logging.getLogger("earmark.evaluation")


@dataclass
class Heard:
    """One file as `listen` heard it: its timeline, length, the seconds the stream took, and the model's frontend."""

    timeline: Timeline
    duration: float
    busy: float
    frontend: FrontendSpec


def listen_to_file(model: str | os.PathLike, path: str | os.PathLike, settings: EventSettings, hop: float | None = None) -> Heard:
    """The `listen --source FILE --fast` loop (file source, streaming classifier, event tracker), recorded."""
    classifier = StreamingClassifier(model, hop_seconds=hop)
    labels = classifier.metadata.labels
    timeline = Timeline(labels, tuple(settings.on(label) for label in labels))
    listener = Listener(classifier, FileSource(str(path), fast=True), [], replace(settings))
    listener.attach(timeline, timeline.add)
    daemon_log = logging.getLogger("earmark.runtime")
    level = daemon_log.level
    daemon_log.setLevel(max(level, logging.WARNING))  # one "delivered" line per file says nothing here; warnings still do
    try:
        listener.run()
    finally:
        daemon_log.setLevel(level)
    return Heard(timeline, sf.info(str(path)).duration, listener.metrics.processing_seconds, classifier.metadata.frontend)


def evaluate_soundscapes(model: str | os.PathLike, manifest: Manifest, settings: EventSettings, out: Path,
                         collars: tuple[float, ...] = (0.2,), offset_ratio: float = 0.5, timelines: int | None = None,
                         hop: float | None = None) -> dict:
    """Event F1 per collar (sed_eval), PSDS1/PSDS2 (sed_scores_eval), false alarms per background minute, and a
    timeline PNG for each of the first ``timelines`` files (all when None) under ``out/timelines``."""
    if not manifest.clips:
        raise ValueError(f"{manifest.source}: no soundscapes to evaluate.")
    meta = load_backend(model).metadata
    labels = list(meta.labels)
    if meta.objective == "classify":
        logger.warning("%s classifies scenes (objective classify): `listen` reports scenes, not events, so it detects no events "
                       "here; train a detector with --objective detect.", model)
    unknown = sorted(set(manifest.labels.to_list()) - set(labels))
    if unknown:
        raise ValueError(f"{manifest.source}: reference labels {unknown} are not among the model's labels {labels}; "
                         "evaluate a model trained on these labels.")
    reference, detections, announced, scores, durations, files = {}, {}, {}, {}, {}, []
    busy = 0.0
    for index, clip in enumerate(manifest.clips):
        heard = listen_to_file(model, clip.path, settings, hop)
        timeline = heard.timeline
        reference[clip.id], detections[clip.id] = list(clip.events), timeline.triples()
        announced[clip.id] = [(e.onset, e.offset, e.label, e.detected) for e in timeline.events]
        scores[clip.id] = ScoreTrack(*timeline.grid())
        durations[clip.id], busy = heard.duration, busy + heard.busy
        row = {"id": clip.id, "path": str(clip.path), "events": len(clip.events), "detections": len(timeline.events)}
        if timelines is None or index < timelines:
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", clip.id)
            row["timeline"] = str(plot_timeline(clip.path, timeline, heard.frontend, out / "timelines" / f"{name}.png", list(clip.events),
                                                title=f"{clip.id}: log-mel spectrogram"))
        files.append(row)
    audio = sum(durations.values())
    return {
        "kind": "soundscapes", "files": len(files), "audio_minutes": audio / 60, "rtf": busy / audio,
        "events": {str(c): event_metrics(reference, detections, labels, c, offset_ratio) for c in collars},
        "psds": psds(scores, reference, durations, labels),
        "segments": segment_map(scores, reference, durations, labels),
        "false_alarms": false_alarms(reference, detections, durations, min(collars)),
        "latency": detection_latency(reference, announced, max(collars)),
        "per_file": files,
    }
