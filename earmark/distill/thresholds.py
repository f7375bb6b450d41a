"""Event thresholds tuned on validation soundscapes, through the decisions `earmark listen` makes.

A model's scores over a soundscape are laid out on the timeline the daemon builds (one segment per
hop for clip models, the new frames of each window for frame models), decoded into events by the
daemon's own ``EventTracker`` (median filter, minimum duration, gap merging, hysteresis), and scored
with sed_eval's event-based counts (onsets within a collar). Two criteria:

* best event F1 (default): the threshold with the best F1 wins, the higher one on ties;
* a false-alarm budget (``max_false_alarms`` per hour of validation audio; one class's with a threshold per class,
  all classes' together with the shared threshold): the threshold
  that finds the most events with at most that many false alarms per hour -- a point of the PSD-ROC
  (true-positive ratio against false positives per hour) that PSDS integrates.

Scope: one threshold shared by all classes (default: the classes' counts pooled, micro F1), or one per
class. Validation mixtures hold a few events per class and ambiences other than the ones the model will
hear; on bench_sed's real held-out soundscapes (3 seeds, 3 detectors) per-class thresholds tuned for F1 fit
those few events and fired 43-65 false alarms per background minute, where one shared threshold kept the
detectors' event F1 (docs/evaluation.md, "Threshold scope"). A class without an operating point (F1 no
better than an always-on detector, or no threshold inside the budget that finds an event) is reported, and
keeps the highest threshold of the grid.
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

from earmark.audio.events import EventSettings, Scores, decode
from earmark.audio.features_torch import Frontend
from earmark.audio.mixing import Soundscape
from earmark.engine.outputs import probabilities

GRID = tuple(round(float(g), 2) for g in np.linspace(0.05, 0.95, 19))
Events = list[tuple[float, float, str]]


@torch.no_grad()
def timeline(model: nn.Module, frontend: Frontend, wave: np.ndarray, window_seconds: float, hop_seconds: float,
             objective: str, batch_size: int = 32) -> list[Scores]:
    """The segments the daemon would see for ``wave``: its feature frames computed once, as a stream computes them, and
    a window of them every hop (``runtime.stream.WindowPlan``), each window adding its new stretch of scores."""
    spec, device = frontend.spec, next(model.parameters()).device
    window = int(round(window_seconds * spec.sample_rate))
    span = spec.num_frames(window)
    hop = max(1, round(hop_seconds / spec.hop_seconds))  # the daemon's hop is whole feature frames
    wave = np.pad(wave, (0, max(0, window - wave.size)))
    frames = frontend.log_mel(torch.from_numpy(wave).to(device), whole_clip=False)[0]
    if getattr(model, "causal", False):  # a causal model streams with state: all of it at once is what the daemon sees
        span = frames.shape[1]
    ends = range(span, frames.shape[1] + 1, hop)
    segments: list[Scores] = []
    model.eval()
    for first in range(0, len(ends), batch_size):
        chunk = ends[first:first + batch_size]
        out = model(frontend.finish(torch.stack([frames[:, e - span:e] for e in chunk])).unsqueeze(1))
        clips = probabilities(out.clip_logits.float(), objective).cpu().numpy()
        frame_probs = None if out.frame_logits is None else probabilities(out.frame_logits.float(), "detect").cpu().numpy()
        for row, e in enumerate(chunk):
            end, is_first = e * spec.hop_seconds, e == span
            if frame_probs is None:
                segments.append(Scores(end - (window_seconds if is_first else hop * spec.hop_seconds), end, clips[row]))
                continue
            probs = frame_probs[row]
            step = out.frame_hop_seconds or window_seconds / len(probs)
            new = len(probs) if is_first else min(len(probs), max(1, round(hop * spec.hop_seconds / step)))
            segments += [Scores(end - (new - i) * step, end - (new - i - 1) * step, probs[len(probs) - new + i]) for i in range(new)]
    return segments


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


def event_f1(counts: dict[str, float]) -> float:
    """Event F1 from sed_eval's counts: 2 TP / (2 TP + FP + FN)."""
    hits = 2 * counts["Ntp"]
    return hits / (hits + counts["Nfp"] + counts["Nref"] - counts["Ntp"]) if counts["Nref"] else 0.0


def pooled_counts(rows: list[dict[str, float]]) -> dict[str, float]:
    """Several classes' sed_eval counts summed (Ntp, Nfp, Nref): what micro-averaged event F1 is computed from."""
    return {k: sum(row[k] for row in rows) for k in ("Ntp", "Nfp", "Nref")}


def _operating_point(curve: list[dict[str, float]], chance: float, hours: float, max_false_alarms: float | None) -> int | None:
    """The grid index to use on one counts curve (see the module docstring), or None when no point is usable."""
    f1 = np.array([event_f1(c) for c in curve])
    found = np.array([c["Ntp"] / c["Nref"] for c in curve])
    if max_false_alarms is None:
        pick = int(np.flatnonzero(f1 == f1.max())[-1])  # the highest threshold among the best
        return pick if f1[pick] > chance else None
    # PSD-ROC operating point: the most events found inside the false-alarm budget, the highest threshold on ties
    inside = np.flatnonzero(np.array([c["Nfp"] / hours for c in curve]) <= max_false_alarms)
    pick = int(inside[found[inside] == found[inside].max()][-1]) if inside.size else None
    return pick if pick is not None and found[pick] > 0 else None


@dataclass
class Curves:
    """sed_eval's counts (Ntp, Nfp, Nref, f1) per class at every grid threshold and for an always-on detector, the
    hours of audio they come from, and the classes with reference events."""

    grid: tuple[float, ...]
    counts: dict[str, list[dict[str, float]]]
    always_on: dict[str, dict[str, float]]
    hours: float
    seen: list[str]


def threshold_curves(timelines: list[list[Scores]], references: list[Events], durations: list[float], labels: list[str],
                     settings: EventSettings, collar: float = 0.5, grid: tuple[float, ...] = GRID) -> Curves:
    """Decode every timeline at every grid threshold (the daemon's decoder) and count hits per class."""
    counts = {label: [] for label in labels}
    for g in grid:
        decoded = [decode(t, labels, replace(settings, thresholds={l: g for l in labels}), d) for t, d in zip(timelines, durations)]
        for label, row in class_counts(references, decoded, labels, collar).items():
            counts[label].append(row)
    always_on = class_counts(references, [[(0.0, d, label) for label in labels] for d in durations], labels, collar)
    seen = [label for label in labels if any(e[2] == label for events in references for e in events)]
    return Curves(tuple(grid), counts, always_on, sum(durations) / 3600, seen)


def pick_thresholds(curves: Curves, max_false_alarms: float | None = None, per_class: bool = False) -> Tuning:
    """One threshold for every class (default) or one per class (``per_class``): the grid threshold with the best
    event F1, or with the most events found within ``max_false_alarms`` false alarms per hour (see the module
    docstring). The shared threshold pools the classes' counts (micro F1; the budget is for all classes together) and
    also applies to classes the validation soundscapes lack."""
    grid, counts, always_on, hours, seen = curves.grid, curves.counts, curves.always_on, curves.hours, curves.seen
    labels = list(counts)
    unseen = [label for label in labels if label not in seen]
    if per_class:
        picks = {label: _operating_point(counts[label], always_on[label]["f1"], hours, max_false_alarms) for label in seen}
    else:
        pooled = [pooled_counts([counts[label][i] for label in seen]) for i in range(len(grid))]
        shared = _operating_point(pooled, event_f1(pooled_counts([always_on[label] for label in seen])), hours, max_false_alarms) if seen else None
        picks = dict.fromkeys(labels, shared)
    stuck = [label for label in seen if picks[label] is None]
    index = {label: len(grid) - 1 if pick is None else pick for label, pick in picks.items()}
    at = {label: counts[label][index[label]] for label in seen}
    scope = "one threshold per class" if per_class else "one threshold for all classes"
    criterion = (f"{scope}: event F1" if max_false_alarms is None
                 else f"{scope}: events found at <= {max_false_alarms:g} false alarms per hour{' per class' if per_class else ' in total'}")
    if stuck:
        why = ("a better event F1 than an always-on detector" if max_false_alarms is None
               else f"a detected event within {max_false_alarms:g} false alarms per hour{'' if per_class else ' in total'}")
        print(f"warning: no threshold gives {stuck} {why} on the validation soundscapes; "
              f"they keep threshold {grid[-1]} (train longer, add their clips, or drop them)", file=sys.stderr)
    if unseen:
        kept = "stay at the default" if per_class else "are the shared one"
        print(f"warning: the validation soundscapes hold no {unseen} event; their thresholds {kept}", file=sys.stderr)
    return Tuning({label: grid[i] for label, i in index.items()}, {label: event_f1(c) for label, c in at.items()},
                  {label: always_on[label]["f1"] for label in labels}, stuck, unseen, criterion,
                  {label: c["Ntp"] / c["Nref"] for label, c in at.items()}, {label: c["Nfp"] / hours for label, c in at.items()})


def tune_thresholds(timelines: list[list[Scores]], references: list[Events], durations: list[float], labels: list[str],
                    settings: EventSettings, collar: float = 0.5, grid: tuple[float, ...] = GRID,
                    max_false_alarms: float | None = None, per_class: bool = False) -> Tuning:
    """``pick_thresholds`` on these timelines' ``threshold_curves``."""
    return pick_thresholds(threshold_curves(timelines, references, durations, labels, settings, collar, grid), max_false_alarms, per_class)


def write_thresholds(path: str | os.PathLike, thresholds: dict[str, float]) -> Path:
    """A thresholds file as `earmark listen --thresholds-file` reads it: a JSON object {label: probability}."""
    path = Path(path)
    path.write_text(json.dumps(thresholds, indent=2, sort_keys=True) + "\n")
    return path


def tune_model(model: nn.Module, frontend: Frontend, soundscapes: list[Soundscape], labels: list[str], objective: str,
               window_seconds: float, hop_seconds: float, settings: EventSettings, max_false_alarms: float | None = None,
               per_class: bool = False) -> Tuning:
    """Thresholds for ``model`` as the daemon will run it (its window, hop and post-processing) on these soundscapes."""
    timelines = [timeline(model, frontend, s.audio, window_seconds, hop_seconds, objective) for s in soundscapes]
    frame_model = getattr(model, "task", "clip") == "frame"
    lag = 0.0 if frame_model else window_seconds - hop_seconds  # as the daemon: clip windows still hear an ended event
    return tune_thresholds(timelines, [s.events for s in soundscapes], [s.audio.size / s.sample_rate for s in soundscapes],
                           labels, replace(settings, offset_lag=lag), max_false_alarms=max_false_alarms, per_class=per_class)
