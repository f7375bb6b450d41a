"""The enrolled detector's thresholds: per label, the best event F1 whose false alarms on the site alone stay inside
that label's share of the budget."""

import numpy as np
import pytest

from earmark.adapt.operating import GRID, best_f1_indices, choose_thresholds, label_threshold, onset_hits
from earmark.audio.events import EventSettings, Scores


def _timeline(events, spike=None, seconds=10.0, step=0.1, labels=("a",), inside=None):
    """Each label scores ``inside`` (0.8 unless given) within its events, 0.1 elsewhere; label a also 0.9 for 0.3 s at
    ``spike``."""
    inside = inside or {}
    segments = []
    for k in range(int(seconds / step)):
        t = k * step + step / 2
        probs = np.array([inside.get(label, 0.8) if any(on <= t < off and name == label for on, off, name in events) else 0.1
                          for label in labels])
        if spike is not None and spike <= t < spike + 0.3:
            probs[0] = 0.9
        segments.append(Scores(k * step, (k + 1) * step, probs))
    return segments


def _middle(low, high):
    """The middle grid value of those above ``low`` up to ``high``."""
    plateau = [g for g in GRID if low < g <= high]
    return plateau[(len(plateau) - 1) // 2]


EVENTS = [[(2.0, 3.0, "a")], [(4.0, 5.0, "a"), (7.0, 8.0, "a")]]
MIXTURES = [(_timeline(e), e, 10.0) for e in EVENTS]
SITE = [(_timeline([], spike=5.0), 10.0), (_timeline([]), 10.0)]  # one site stretch has a 0.9 spike: 180 per hour


def test_the_threshold_is_the_best_f1_inside_the_site_budget():
    point = choose_thresholds(MIXTURES, SITE, ["a"], EventSettings(median=3), 200.0)
    # the middle of the best F1's thresholds: those whose off threshold (0.7 of it) lies above the 0.1 between events,
    # up to the events' 0.8
    assert point.thresholds == {"a": _middle(0.1 / 0.7, 0.8)} and point.within_budget
    assert point.false_alarms_per_hour == pytest.approx(180.0) and point.site_hours == pytest.approx(20 / 3600)
    assert (point.f1, point.recall) == (1.0, {"a": 1.0})


@pytest.mark.parametrize("budget", [100.0, 0.0])
def test_no_threshold_inside_the_budget_keeps_the_grid_top_and_says_so(budget):
    """Every threshold that finds the events also passes the site's spike (180 per hour)."""
    point = choose_thresholds(MIXTURES, SITE, ["a"], EventSettings(median=3), budget)
    assert point.thresholds == {"a": GRID[-1]} and not point.within_budget and point.missed == ["a"]


def test_a_label_the_site_resembles_does_not_silence_the_others():
    """The site's 0.9 spike of label a (whose events score 0.97) lifts a's threshold above 0.9; b keeps the middle of its
    own best F1. One shared threshold above 0.9 would find no b at all."""
    events = [[(2.0, 3.0, "a"), (5.0, 6.0, "b")], [(4.0, 5.0, "b"), (7.0, 8.0, "a")]]
    mixtures = [(_timeline(e, labels=("a", "b"), inside={"a": 0.97}), e, 10.0) for e in events]
    site = [(_timeline([], spike=5.0, labels=("a", "b")), 10.0), (_timeline([], labels=("a", "b")), 10.0)]
    point = choose_thresholds(mixtures, site, ["a", "b"], EventSettings(median=3), 200.0)  # 0.56 alarms a label: none
    # a: above the site's spike up to its events' 0.97; b: one event a mixture, so a track that stays on costs none
    assert point.thresholds == {"a": _middle(0.9, 0.97), "b": _middle(0.1, 0.8)} and point.within_budget and point.missed == []
    assert point.recall == {"a": 1.0, "b": 1.0} and point.f1 == 1.0 and point.false_alarms_per_hour == 0.0


def test_onset_hits_match_each_reference_once_by_label_and_collar():
    reference = [(1.0, 2.0, "a"), (5.0, 6.0, "a"), (5.2, 6.0, "b")]
    assert onset_hits(reference, [(1.3, 2.0, "a"), (1.4, 2.0, "a"), (5.4, 6.0, "b"), (9.0, 9.5, "a")]) == [(1.0, 2.0, "a"), (5.2, 6.0, "b")]


def test_a_label_takes_the_middle_of_its_best_f1_among_the_values_inside_its_share():
    """(events found, detections, site alarms) per grid value: the first two raise too many alarms; of the three with
    F1 1.0 the middle one; a label that finds nothing takes the top."""
    per_grid = [(2, 9, 5), (2, 4, 3), (2, 2, 0), (2, 2, 0), (2, 2, 0), (1, 1, 0), (0, 0, 0)]
    assert label_threshold(per_grid, references=2, share=1.0) == 3
    assert label_threshold([(0, 3, 0), (0, 0, 0), (0, 0, 0)], references=2, share=1.0) == 2
    assert best_f1_indices(per_grid, references=2, share=1.0) == [2, 3, 4]
    assert best_f1_indices(per_grid, references=2, share=1.0, tolerance=0.4) == [2, 3, 4, 5]  # F1 2/3 within 0.4 of 1
    assert best_f1_indices([(0, 3, 0), (0, 0, 0)], references=2, share=1.0, tolerance=1.0) == []
