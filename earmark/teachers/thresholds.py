"""Per-class thresholds tuned on validation soundscapes, through the decisions `earmark listen` makes.

A model's scores over a soundscape are laid out on the timeline the daemon builds (one segment per
hop for clip models, the new frames of each window for frame models), decoded into events by the
daemon's own ``EventTracker`` (median filter, minimum duration, gap merging, hysteresis), and scored
with sed_eval's event-based counts (onsets within a collar). Two criteria:

* best event F1 (default): per class, the threshold with the best F1 wins, the higher one on ties;
* a false-alarm budget (``max_false_alarms`` per hour of validation audio): per class, the threshold
  that finds the most events with at most that many false alarms per hour -- a point of the PSD-ROC
  (true-positive ratio against false positives per hour) that PSDS integrates.

A class without such a point (F1 no better than an always-on detector, or no threshold inside the
budget that finds an event) is reported, and keeps the highest threshold of the grid.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from earmark.audio.events import EventSettings, EventTracker, Scores
from earmark.audio.features_torch import Frontend
from earmark.audio.mixing import Soundscape
from earmark.engine.outputs import probabilities

GRID = tuple(round(float(g), 2) for g in np.linspace(0.05, 0.95, 19))
Events = list[tuple[float, float, str]]


@torch.no_grad()
def timeline(model: nn.Module, frontend: Frontend, wave: np.ndarray, window_seconds: float, hop_seconds: float,
             objective: str, batch_size: int = 32) -> list[Scores]:
    """The segments the daemon would see for ``wave``: windows every hop, each adding its new stretch of scores."""
    spec, device = frontend.spec, next(model.parameters()).device
    window = int(round(window_seconds * spec.sample_rate))
    hop = max(1, round(hop_seconds / spec.hop_seconds)) * spec.hop_length  # the daemon's hop is whole feature frames
    wave = np.pad(wave, (0, max(0, window - wave.size)))
    starts = range(0, wave.size - window + 1, hop)
    segments: list[Scores] = []
    model.eval()
    for first in range(0, len(starts), batch_size):
        chunk = starts[first:first + batch_size]
        windows = torch.from_numpy(np.stack([wave[s:s + window] for s in chunk])).to(device)
        out = model(frontend(windows).unsqueeze(1))
        clips = probabilities(out.clip_logits.float(), objective).cpu().numpy()
        frames = None if out.frame_logits is None else probabilities(out.frame_logits.float(), "detect").cpu().numpy()
        for row, start in enumerate(chunk):
            end, is_first = (start + window) / spec.sample_rate, start == 0
            if frames is None:
                segments.append(Scores(end - (window_seconds if is_first else hop / spec.sample_rate), end, clips[row]))
                continue
            probs = frames[row]
            step = out.frame_hop_seconds or window_seconds / len(probs)
            new = len(probs) if is_first else min(len(probs), max(1, round(hop / spec.sample_rate / step)))
            segments += [Scores(end - (new - i) * step, end - (new - i - 1) * step, probs[len(probs) - new + i]) for i in range(new)]
    return segments


def decode(segments: list[Scores], labels: list[str], settings: EventSettings, duration: float) -> Events:
    """The events the daemon reports for this timeline."""
    tracker = EventTracker(tuple(labels), replace(settings, thresholds=dict(settings.thresholds)))
    events = []
    for segment in segments:
        events += tracker.push(segment)[0]
    events += tracker.flush(duration)[0]
    return [(e.onset, e.offset, e.label) for e in events]


def class_counts(references: list[Events], estimates: list[Events], labels: list[str], collar: float = 0.5) -> dict[str, dict[str, float]]:
    """sed_eval's event-based counts per class (Ntp, Nfp, Nref, f1), onsets within ``collar`` seconds, over several files."""
    with warnings.catch_warnings():  # dcase_util (under sed_eval) imports the deprecated pkg_resources
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import dcase_util
        import sed_eval

    metric = sed_eval.sound_event.EventBasedMetrics(event_label_list=labels, t_collar=collar, evaluate_onset=True, evaluate_offset=False)
    for k, (reference, estimate) in enumerate(zip(references, estimates)):
        rows = lambda events: dcase_util.containers.MetaDataContainer(
            [{"filename": f"f{k}", "onset": on, "offset": off, "event_label": label} for on, off, label in events])
        metric.evaluate(reference_event_list=rows(reference), estimated_event_list=rows(estimate))
    scores = metric.results_class_wise_metrics()
    return {label: {**{k: float(metric.class_wise[label][k]) for k in ("Ntp", "Nfp", "Nref")},
                    "f1": float(np.nan_to_num(scores[label]["f_measure"]["f_measure"]))} for label in labels}


def class_f1(references: list[Events], estimates: list[Events], labels: list[str], collar: float = 0.5) -> dict[str, float]:
    """sed_eval's event-based F1 per class, onsets within ``collar`` seconds, over several files."""
    return {label: counts["f1"] for label, counts in class_counts(references, estimates, labels, collar).items()}


@dataclass
class Tuning:
    """Tuned thresholds, the event F1, recall and false alarms per hour each reaches, an always-on detector's F1,
    and the classes left at the grid top."""

    thresholds: dict[str, float]
    f1: dict[str, float]
    chance: dict[str, float]
    no_operating_point: list[str]
    unseen: list[str]  # no validation event: the default threshold stays
    criterion: str = "event F1"
    recall: dict[str, float] = field(default_factory=dict)
    false_alarms_per_hour: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def tune_thresholds(timelines: list[list[Scores]], references: list[Events], durations: list[float], labels: list[str],
                    settings: EventSettings, collar: float = 0.5, grid: tuple[float, ...] = GRID,
                    max_false_alarms: float | None = None) -> Tuning:
    """Per class, the grid threshold with the best event F1, or with the most events found within ``max_false_alarms``
    per hour (see the module docstring)."""
    curves = {label: [] for label in labels}
    for g in grid:
        decoded = [decode(t, labels, replace(settings, thresholds={l: g for l in labels}), d) for t, d in zip(timelines, durations)]
        for label, counts in class_counts(references, decoded, labels, collar).items():
            curves[label].append(counts)
    chance = class_f1(references, [[(0.0, d, label) for label in labels] for d in durations], labels, collar)
    hours = sum(durations) / 3600
    seen = {label for events in references for *_, label in events}
    thresholds, best, recall, alarms, stuck = {}, {}, {}, {}, []
    for label in labels:
        if label not in seen:
            continue
        f1 = np.array([c["f1"] for c in curves[label]])
        found = np.array([c["Ntp"] / c["Nref"] for c in curves[label]])
        per_hour = np.array([c["Nfp"] / hours for c in curves[label]])
        if max_false_alarms is None:
            pick = int(np.flatnonzero(f1 == f1.max())[-1])  # the highest threshold among the best
            usable = f1[pick] > chance[label]
        else:  # PSD-ROC operating point: the most events found inside the false-alarm budget, the highest threshold on ties
            inside = np.flatnonzero(per_hour <= max_false_alarms)
            pick = int(inside[found[inside] == found[inside].max()][-1]) if inside.size else len(grid) - 1
            usable = inside.size > 0 and found[pick] > 0
        if not usable:
            stuck.append(label)
            pick = len(grid) - 1
        thresholds[label], best[label] = grid[pick], float(f1[pick])
        recall[label], alarms[label] = float(found[pick]), float(per_hour[pick])
    unseen = [label for label in labels if label not in seen]
    criterion = "event F1" if max_false_alarms is None else f"events found at <= {max_false_alarms:g} false alarms per hour"
    if stuck:
        why = ("a better event F1 than an always-on detector" if max_false_alarms is None
               else f"a detected event within {max_false_alarms:g} false alarms per hour")
        print(f"warning: no threshold gives {stuck} {why} on the validation soundscapes; "
              f"they keep threshold {grid[-1]} (train longer, add their clips, or drop them)", file=sys.stderr)
    if unseen:
        print(f"warning: the validation soundscapes hold no {unseen} event; their thresholds stay at the default", file=sys.stderr)
    return Tuning(thresholds, best, {l: chance[l] for l in labels}, stuck, unseen, criterion, recall, alarms)


def write_thresholds(path: str | os.PathLike, thresholds: dict[str, float]) -> Path:
    """A thresholds file as `earmark listen --thresholds-file` reads it: a JSON object {label: probability}."""
    path = Path(path)
    path.write_text(json.dumps(thresholds, indent=2, sort_keys=True) + "\n")
    return path


def tune_model(model: nn.Module, frontend: Frontend, soundscapes: list[Soundscape], labels: list[str], objective: str,
               window_seconds: float, hop_seconds: float, settings: EventSettings, max_false_alarms: float | None = None) -> Tuning:
    """Thresholds for ``model`` as the daemon will run it (its window, hop and post-processing) on these soundscapes."""
    timelines = [timeline(model, frontend, s.audio, window_seconds, hop_seconds, objective) for s in soundscapes]
    frame_model = getattr(model, "task", "clip") == "frame"
    lag = 0.0 if frame_model else window_seconds - hop_seconds  # as the daemon: clip windows still hear an ended event
    return tune_thresholds(timelines, [s.events for s in soundscapes], [s.audio.size / s.sample_rate for s in soundscapes],
                           labels, replace(settings, offset_lag=lag), max_false_alarms=max_false_alarms)
