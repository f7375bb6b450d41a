"""The enrolled head's operating point: one threshold shared by its labels, chosen on cross-validation folds through
the daemon's own decoder (``earmark.audio.events.decode``), in numpy (no torch, no sed_eval: it runs on the edge).

The folds give timelines of mixtures of held-out examples over a held-out stretch of the site, and of those stretches
alone. A threshold's false alarms are its detections on the site alone, per hour of it: the site's own sounds are what
an enrolled detector must stay quiet on. Its event F1 is counted on the mixtures: a detection whose label matches a
reference not yet matched, with onsets within ``COLLAR``, is a hit; any other detection (a wrong label, a second
piece of one event) counts against precision. The threshold with the best F1 inside the budget wins (the higher on
ties); when none finds an event inside it, the grid's top is kept and ``within_budget`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from earmark.audio.events import EventSettings, Scores, decode

GRID = tuple(round(float(g), 3) for g in np.r_[np.linspace(0.05, 0.95, 19), 0.97, 0.98, 0.99, 0.995, 0.998])  # a head
# fitted on a few examples is confident: the site's own frames can score above 0.95
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
    """The chosen threshold and what it reaches on the folds: event F1, events found per label, site false alarms."""

    threshold: float
    f1: float
    recall: dict[str, float]
    false_alarms_per_hour: float
    within_budget: bool
    site_hours: float


def choose_threshold(mixtures: list[tuple[list[Scores], Events, float]], site: list[tuple[list[Scores], float]],
                     labels: list[str], settings: EventSettings, max_false_alarms: float, grid: tuple[float, ...] = GRID) -> OperatingPoint:
    """The operating point for ``max_false_alarms`` per hour of site audio, all labels together (module docstring);
    ``mixtures`` are (timeline, reference events, seconds), ``site`` (timeline, seconds)."""
    references = [event for _, events, _ in mixtures for event in events]
    hours = sum(seconds for _, seconds in site) / 3600
    points = []
    for g in grid:
        at = replace(settings, thresholds=dict.fromkeys(labels, g))
        found, detections = [], 0
        for timeline, events, seconds in mixtures:
            detected = decode(timeline, labels, at, seconds)
            found += onset_hits(events, detected)
            detections += len(detected)
        alarms = sum(len(decode(timeline, labels, at, seconds)) for timeline, seconds in site)
        f1 = 2 * len(found) / (detections + len(references)) if references else 0.0
        recall = {label: sum(r[2] == label for r in found) / max(1, sum(r[2] == label for r in references)) for label in labels}
        points.append(OperatingPoint(g, f1, recall, alarms / hours, alarms / hours <= max_false_alarms and bool(found), hours))
    inside = [p for p in points if p.within_budget]
    return max(inside, key=lambda p: (p.f1, p.threshold)) if inside else points[-1]
