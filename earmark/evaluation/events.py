"""Sound event metrics through the reference libraries: event F1 by sed_eval, PSDS1/PSDS2 and segment mAP by sed_scores_eval.

Events are ``(onset, offset, label)`` tuples in seconds, grouped by file id: ``{file_id: [event, ...]}``.
A file without events must still be listed (empty), so that its audio counts as background.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass

import numpy as np

from earmark.audio import merge_overlaps

Event = tuple[float, float, str]
EventsByFile = dict[str, list[Event]]
ANY_LABEL = "any sound"  # the one label of class-agnostic scoring

# DCASE Task 4 (2022-2023) operating settings of the PSDS; max eFPR is 100 false positives per hour.
PSDS1 = {"dtc_threshold": 0.7, "gtc_threshold": 0.7, "cttc_threshold": None, "alpha_ct": 0.0, "alpha_st": 1.0, "max_efpr": 100.0}
PSDS2 = {"dtc_threshold": 0.1, "gtc_threshold": 0.1, "cttc_threshold": 0.3, "alpha_ct": 0.5, "alpha_st": 1.0, "max_efpr": 100.0}
MISSING = "sound event metrics need sed_eval and sed_scores_eval: pip install 'earmark[eval]'."


@dataclass
class ScoreTrack:
    """One file's scores on the runtime's segment grid: ``probs`` (N, C) over [timestamps[i], timestamps[i + 1])."""

    timestamps: np.ndarray
    probs: np.ndarray


def _library(module: str):
    """Import one of the metric libraries, or say how to install them."""
    try:
        with warnings.catch_warnings():  # dcase_util (under sed_eval) imports the deprecated pkg_resources
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            return importlib.import_module(module)
    except ImportError:
        raise RuntimeError(MISSING) from None


def _scores(f: dict, references: int) -> dict[str, float | None]:
    """sed_eval's F1, precision and recall with its NaNs resolved: no references -> None; references but no
    detections -> F1 0 (recall 0) and precision None."""
    if not references:
        return {"f1": None, "precision": None, "recall": None}
    undefined = lambda value: None if np.isnan(value) else float(value)
    return {"f1": undefined(f["f_measure"]) or 0.0, "precision": undefined(f["precision"]), "recall": float(f["recall"])}


def _event_based(reference: EventsByFile, detections: EventsByFile, labels: list[str], collar: float, offset_ratio: float,
                 offsets: bool):
    """sed_eval's EventBasedMetrics over every file (optimal matching, onsets within ``collar``, offsets if asked)."""
    metric = _library("sed_eval.sound_event").EventBasedMetrics(labels, evaluate_onset=True, evaluate_offset=offsets, t_collar=collar,
                                                                percentage_of_length=offset_ratio, event_matching_type="optimal")
    for file_id, events in reference.items():  # sed_eval matches within one file per call
        as_dicts = lambda evs: [{"filename": file_id, "onset": on, "offset": off, "event_label": lab} for on, off, lab in evs]
        metric.evaluate(as_dicts(events), as_dicts(detections.get(file_id, [])))
    return metric


def event_metrics(reference: EventsByFile, detections: EventsByFile, labels: list[str] | None = None,
                  collar: float = 0.2, offset_ratio: float = 0.5) -> dict:
    """sed_eval's event-based F1 (optimal matching) with onsets only and with onsets and offsets.

    A hit needs the label, |onset error| <= ``collar`` and, for ``onset_offset``, |offset error| <=
    max(``collar``, ``offset_ratio`` x the reference event's length). Micro (``f1``) and class-wise mean (``macro_f1``)
    over the classes with references. sed_eval leaves F1 at NaN when there are no detections (precision 0/0) and its
    class-wise mean skips NaN, which would hide a class the model never detects: such a class counts as F1 0 here
    (recall 0). A class without references has F1 ``None`` (undefined), as has a precision without detections.
    ``any_label`` scores the same events with every label made one (class-agnostic): a sound heard at the right
    time but misnamed is a hit there and a miss in ``onset``.
    """
    missing = sorted(set(detections) - set(reference))
    if missing:
        raise ValueError(f"detections for files {missing[:3]} that have no reference; list every evaluated file in the reference.")
    labels = labels or sorted({e[2] for events in (*reference.values(), *detections.values()) for e in events})
    results = {"collar": collar, "offset_ratio": offset_ratio, "any_label": {}}
    per_class: dict[str, dict] = {label: {} for label in labels}
    references = sum(map(len, reference.values()))
    for name, offsets in (("onset", False), ("onset_offset", True)):
        metric = _event_based(reference, detections, labels, collar, offset_ratio, offsets)
        results[name] = _scores(metric.results_overall_metrics()["f_measure"], references)
        heard = _event_based(_anonymous(reference), _anonymous(detections), [ANY_LABEL], collar, offset_ratio, offsets)
        results["any_label"][name] = _scores(heard.results_overall_metrics()["f_measure"], references)
        for label, block in metric.results_class_wise_metrics().items():
            per_class[label][f"{name}_f1"] = _scores(block["f_measure"], int(block["count"]["Nref"]))["f1"]
            per_class[label].update(references=int(block["count"]["Nref"]), detections=int(block["count"]["Nsys"]))
        scored = [c[f"{name}_f1"] for c in per_class.values() if c[f"{name}_f1"] is not None]
        results[name]["macro_f1"] = float(np.mean(scored)) if scored else None
    results["per_class"] = per_class
    results["references"] = references
    results["detections"] = sum(len(e) for e in detections.values())
    return results


def _anonymous(events: EventsByFile) -> EventsByFile:
    """The same events with every label made ANY_LABEL (class-agnostic scoring)."""
    return {file_id: [(on, off, ANY_LABEL) for on, off, _ in evs] for file_id, evs in events.items()}


def _present_classes(reference: EventsByFile, labels: list[str], metric: str) -> list[str]:
    """The labels with reference events, checked against the model's."""
    present = sorted({e[2] for events in reference.values() for e in events})
    if not present:
        raise ValueError(f"the reference has no events, so {metric} is undefined; evaluate on soundscapes that contain events.")
    unknown = sorted(set(present) - set(labels))
    if unknown:
        raise ValueError(f"reference labels {unknown} are not among the model's labels {labels}; evaluate with a matching model.")
    return present


def _score_frames(scores: dict[str, ScoreTrack], columns: list[int] | None, names: list[str]) -> dict:
    """sed_scores_eval's score DataFrames: the chosen columns, or (``columns`` None) each segment's highest score."""
    create_score_dataframe = _library("sed_scores_eval.base_modules.scores").create_score_dataframe
    pick = (lambda p: p.max(axis=1, keepdims=True)) if columns is None else (lambda p: p[:, columns])
    return {file_id: create_score_dataframe(np.ascontiguousarray(pick(track.probs), np.float64), track.timestamps, names)
            for file_id, track in scores.items()}


def psds(scores: dict[str, ScoreTrack], reference: EventsByFile, durations: dict[str, float], labels: list[str]) -> dict:
    """PSDS1 and PSDS2 (DCASE Task 4 settings) of per-segment scores, exact (threshold-free) by sed_scores_eval.

    Classes without any reference event have no true positive rate; they are left out and listed in ``excluded``.
    PSDS2 is None when fewer than two classes have references.
    """
    intersection_based = _library("sed_scores_eval.intersection_based")
    present = _present_classes(reference, labels, "PSDS")
    frames = _score_frames(scores, [labels.index(label) for label in present], present)
    ground_truth = {file_id: list(reference.get(file_id, [])) for file_id in scores}
    out = {"classes": present, "excluded": [label for label in labels if label not in present], "psds2": None}
    # PSDS2 penalises cross-triggers between classes, so it needs two classes with references.
    for name, settings in (("psds1", PSDS1), ("psds2", PSDS2))[:1 if len(present) < 2 else 2]:
        value, per_class, *_ = intersection_based.psds(frames, ground_truth, {k: durations[k] for k in scores}, **settings)
        out[name] = float(value)
        out[f"{name}_per_class"] = {label: float(v) for label, v in per_class.items()}
    return out


def segment_map(scores: dict[str, ScoreTrack], reference: EventsByFile, durations: dict[str, float], labels: list[str],
                segment: float = 1.0) -> dict:
    """Segment-based average precision (sed_scores_eval): threshold-free, so it ranks detectors that no threshold suits.

    Each ``segment``-second stretch is a positive for a class when a reference event of it overlaps the stretch, and
    scores by its highest score there; ``mAP`` averages the classes with events, ``any_label`` ranks each segment's
    highest score of any class against "some event sounds" (heard, named or not).
    """
    segment_based = _library("sed_scores_eval.segment_based")
    present = _present_classes(reference, labels, "segment mAP")
    lengths = {k: durations[k] for k in scores}
    ground_truth = {file_id: list(reference.get(file_id, [])) for file_id in scores}
    per_class, _ = segment_based.average_precision(_score_frames(scores, [labels.index(label) for label in present], present),
                                                   ground_truth, lengths, segment_length=segment)
    agnostic = {file_id: merge_overlaps(events) for file_id, events in _anonymous(ground_truth).items()}
    anything, _ = segment_based.average_precision(_score_frames(scores, None, [ANY_LABEL]), agnostic, lengths, segment_length=segment)
    return {"segment_seconds": segment, "mAP": float(np.mean([per_class[label] for label in present])),
            "per_class": {label: float(per_class[label]) for label in present}, "any_label": float(anything[ANY_LABEL])}


def false_alarms(reference: EventsByFile, detections: EventsByFile, durations: dict[str, float], collar: float = 0.2) -> dict:
    """Detections that start in background-only audio, per minute of it.

    Background is each file's time outside its reference events widened by ``collar`` on both sides; a false
    alarm is a detection (any label) whose onset lies in background, so a detection that starts early and runs
    into an event still counts: it fired while nothing was sounding.
    """
    count, background = 0, 0.0
    for file_id, duration in durations.items():
        busy = sorted((max(0.0, on - collar), min(duration, off + collar)) for on, off, _ in reference.get(file_id, []))
        covered, reach = 0.0, 0.0  # length of the union of the widened events, swept left to right
        for start, end in busy:
            covered += max(0.0, end - max(start, reach))
            reach = max(reach, end)
        background += duration - covered
        count += sum(1 for on, _, _ in detections.get(file_id, []) if not any(start <= on <= end for start, end in busy))
    minutes = background / 60
    return {"false_alarms": count, "background_minutes": minutes, "per_minute": count / minutes if minutes else 0.0}


Detection = tuple[float, float, str, float]  # (onset, offset, label, detected): the stream time its ON was announced


def detection_latency(reference: EventsByFile, detections: dict[str, list[Detection]], collar: float = 0.2) -> dict:
    """For each hit, the stream time from the reference onset to the ON announcement: median, p90 and the hits.

    A hit pairs a reference event with a detection of its label whose onset is within ``collar`` (onset F1's rule),
    each used once, the closest onsets first. The announcement's stream time counts everything the listener waited
    for: the window (or hop) of audio, the median filter's centre lag and the minimum duration.
    """
    latencies = []
    for file_id, events in reference.items():
        found = detections.get(file_id, [])
        pairs = sorted((abs(d[0] - r[0]), i, j) for i, r in enumerate(events) for j, d in enumerate(found)
                       if d[2] == r[2] and abs(d[0] - r[0]) <= collar)
        used_ref, used_det = set(), set()
        for _, i, j in pairs:
            if i not in used_ref and j not in used_det:
                used_ref.add(i), used_det.add(j)
                latencies.append(found[j][3] - events[i][0])
    if not latencies:
        return {"collar": collar, "hits": 0, "median": None, "p90": None}
    return {"collar": collar, "hits": len(latencies), "median": float(np.median(latencies)),
            "p90": float(np.percentile(latencies, 90))}
