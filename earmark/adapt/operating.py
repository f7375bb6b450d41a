"""The enrolled detector's operating point: a threshold per label for a false-alarm budget on the site, chosen on
held-out timelines through the daemon's own decoder (``earmark.audio.events.decode``), in numpy (no torch, no sed_eval:
it runs on the edge).

The caller gives timelines of mixtures of held-out examples over a held-out stretch of the site, and of those
stretches alone. A label's false alarms are its detections on the site alone: the site's own sounds are what an
enrolled detector must stay quiet on. The budget (per hour of site, all labels together) is shared equally: each
label may raise ``budget / labels`` of it. Within its share, each label takes the threshold with its best event F1 on
the mixtures (of several, the middle one: ``label_threshold``; bench_enrol_thresholds.py compares rules): a detection
whose label matches a reference not yet matched, with onsets within ``COLLAR``, is a hit; any other detection of that
label (a wrong label, a second piece of one event) counts against it. Labels decode independently, so each label's
threshold is chosen apart: a label the site itself resembles (a crackling fire over a humming site) gets a high
threshold without silencing the others, as one shared threshold did (bench_adapt, docs/enrolment.md). A label that
finds no event within its share keeps the grid's top and is named in ``missed``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from earmark.audio.events import EventSettings, Scores, decode

# Thresholds in equal steps of the logit, log(p / (1 - p)) from -3 to 8 by 0.25 (p 0.047 to 0.99966): a detector fitted
# on a few examples is confident, the site's own frames can score above 0.99, and there steps of probability are too
# coarse (0.99, 0.995, 0.998 were the last three of an earlier grid, and most labels chose one of them).
GRID = tuple(round(float(1 / (1 + np.exp(-z))), 5) for z in np.arange(-3, 8.125, 0.25))
COLLAR = 0.5
Events = list[tuple[float, float, str]]


def onset_hits(reference: Events, detected: Events, collar: float = COLLAR) -> list[tuple[float, float, str]]:
    """The references found: each detection, in onset order, takes the nearest unfound reference of its label whose
    onset is within ``collar`` seconds of its own."""
    free, found = sorted(reference), []
    for onset, _, label in sorted(detected):
        near = [r for r in free if r[2] == label and abs(r[0] - onset) <= collar]
        if near:
            best = min(near, key=lambda r: abs(r[0] - onset))
            free.remove(best)
            found.append(best)
    return found


@dataclass
class OperatingPoint:
    """The chosen thresholds and what they reach on the held-out timelines: event F1 of all labels, events found per
    label, site false alarms of all labels, and the labels that found nothing within their share (``missed``)."""

    thresholds: dict[str, float]
    f1: float
    recall: dict[str, float]
    false_alarms_per_hour: float
    within_budget: bool  # every label found an event within its share of the budget
    missed: list[str]
    site_hours: float


def grid_counts(mixtures: list[tuple[list[Scores], Events, float]], site: list[tuple[list[Scores], float]],
                labels: list[str], settings: EventSettings, grid: tuple[float, ...] = GRID) -> dict[str, list[tuple[int, int, int]]]:
    """Per label, per grid value (every label at it): events found and detections on ``mixtures`` (timeline, reference
    events, seconds), and detections on ``site`` (timeline, seconds), through the daemon's decoder."""
    counts = {label: [] for label in labels}
    for g in grid:
        at = replace(settings, thresholds=dict.fromkeys(labels, g))
        hits, detections, alarms = Counter(), Counter(), Counter()
        for timeline, events, seconds in mixtures:
            detected = decode(timeline, labels, at, seconds)
            hits.update(label for _, _, label in onset_hits(events, detected))
            detections.update(label for _, _, label in detected)
        for timeline, seconds in site:
            alarms.update(label for _, _, label in decode(timeline, labels, at, seconds))
        for label in labels:
            counts[label].append((hits[label], detections[label], alarms[label]))
    return counts


def event_f1(found: int, detections: int, references: int) -> float:
    """Event F1 from events found, detections and reference events (0 when nothing is found)."""
    return 2 * found / (detections + references) if found else 0.0


def best_f1_indices(per_grid: list[tuple[int, int, int]], references: int, share: float, tolerance: float = 0.0) -> list[int]:
    """Grid indices of one label, from its (events found, detections, site alarms) at each grid value: those whose site
    alarms fit ``share`` and whose event F1 on the mixtures is within ``tolerance`` of the best of them; none where no
    value within the share finds an event."""
    inside = [(event_f1(found, detections, references), i) for i, (found, detections, alarms) in enumerate(per_grid) if alarms <= share]
    best = max((f1 for f1, _ in inside), default=0.0)
    return [i for f1, i in inside if f1 >= best - tolerance] if best else []


def label_threshold(per_grid: list[tuple[int, int, int]], references: int, share: float) -> int:
    """Index of one label's threshold in the grid: of the values with the best F1 within its share
    (``best_f1_indices``), the middle one, as far in logit steps from the lowest (nearer the site's own sounds) as from
    the highest (which loses the quieter sounds the fine-tune never heard); the grid's top where none finds an event."""
    ties = best_f1_indices(per_grid, references, share)
    return ties[(len(ties) - 1) // 2] if ties else len(per_grid) - 1


def choose_thresholds(mixtures: list[tuple[list[Scores], Events, float]], site: list[tuple[list[Scores], float]],
                      labels: list[str], settings: EventSettings, max_false_alarms: float, grid: tuple[float, ...] = GRID) -> OperatingPoint:
    """The operating point for ``max_false_alarms`` per hour of site audio, all labels together (module docstring);
    ``mixtures`` are (timeline, reference events, seconds), ``site`` (timeline, seconds)."""
    references = Counter(label for _, events, _ in mixtures for _, _, label in events)
    hours = sum(seconds for _, seconds in site) / 3600
    share = max_false_alarms * hours / len(labels)  # site detections each label may raise
    counts = grid_counts(mixtures, site, labels, settings, grid)  # per grid value: (hits, detections, site alarms)
    chosen = {}
    for label in labels:
        index = label_threshold(counts[label], references[label], share)
        chosen[label] = (grid[index], counts[label][index])
    hits = sum(c[0] for _, c in chosen.values())
    detections = sum(c[1] for _, c in chosen.values())
    total = sum(references.values())
    missed = [label for label, (_, c) in chosen.items() if not c[0]]
    return OperatingPoint({label: g for label, (g, _) in chosen.items()}, event_f1(hits, detections, total),
                          {label: c[0] / max(1, references[label]) for label, (_, c) in chosen.items()},
                          sum(c[2] for _, c in chosen.values()) / hours, not missed, missed, hours)
