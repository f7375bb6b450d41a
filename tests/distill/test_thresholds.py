"""Threshold tuning for event F1 through the daemon's own decoder, and the chance warning."""

import numpy as np
import pytest

from earmark.audio.events import EventSettings, Scores
from earmark.distill.thresholds import GRID, class_counts, decode, tune_thresholds

LABELS = ["a", "b"]


def _timeline(events, spike=None, seconds=10.0, step=0.1):
    """Class a scores 0.85 inside its events and 0.1 outside (one 0.9 spike at ``spike``); class b is 0.3 all along."""
    segments = []
    for k in range(int(seconds / step)):
        start = k * step
        a = 0.85 if any(on <= start + step / 2 < off for on, off, _ in events) else 0.1
        if spike is not None and abs(start - spike) < step / 2:
            a = 0.9
        segments.append(Scores(start, start + step, np.array([a, 0.3])))
    return segments


REFERENCES = [[(2.0, 3.0, "a"), (6.0, 6.8, "a")], [(1.0, 2.5, "a")], [(4.0, 4.6, "a"), (8.0, 9.0, "a")]]


def test_thresholds_are_tuned_with_the_daemons_median_filter():
    timelines = [_timeline(r, spike=5.0) for r in REFERENCES]
    filtered = tune_thresholds(timelines, REFERENCES, [10.0] * 3, LABELS, EventSettings(median=3), per_class=True)
    assert filtered.f1["a"] == 1.0 and filtered.thresholds["a"] == 0.85  # the highest threshold of the best F1
    raw = tune_thresholds(timelines, REFERENCES, [10.0] * 3, LABELS, EventSettings(median=1), per_class=True)
    assert raw.f1["a"] < 1.0  # without the median filter the one-segment spikes are false alarms at every threshold that finds the events


def test_a_class_without_an_operating_point_above_chance_is_reported(capsys):
    timelines = [_timeline(r) for r in REFERENCES]
    references = [r + [(0.2, 9.5, "b")] for r in REFERENCES]  # b's scores never move: always on is all it can do
    tuning = tune_thresholds(timelines, references, [10.0] * 3, LABELS, EventSettings(), per_class=True)
    assert tuning.no_operating_point == ["b"] and tuning.thresholds["b"] == GRID[-1]
    assert "no threshold gives ['b'] a better event F1 than an always-on detector" in capsys.readouterr().err
    unseen = tune_thresholds(timelines, REFERENCES, [10.0] * 3, LABELS, EventSettings(), per_class=True)
    assert unseen.unseen == ["b"] and "b" not in unseen.thresholds


def test_decode_and_sed_eval_f1_by_hand():
    events = decode(_timeline([(2.0, 3.0, "a")]), LABELS, EventSettings(thresholds={"a": 0.5, "b": 0.5}), 10.0)
    assert [(round(on, 2), round(off, 2), label) for on, off, label in events if label == "a"] == [(2.0, 3.0, "a")]
    counts = class_counts([[(2.0, 3.0, "a"), (5.0, 6.0, "a")]], [[(2.3, 2.9, "a"), (7.0, 8.0, "a")]], ["a"])
    assert counts["a"]["f1"] == pytest.approx(0.5)  # one hit of two references and two estimates


def test_a_false_alarm_budget_picks_the_psd_roc_operating_point():
    timelines = [_timeline(r, spike=5.0) for r in REFERENCES]  # 5 events; one 0.9 spike per file, above every event score
    free = tune_thresholds(timelines, REFERENCES, [10.0] * 3, LABELS, EventSettings(), max_false_alarms=1000.0, per_class=True)
    assert free.thresholds["a"] == 0.85 and free.recall["a"] == 1.0  # 3 spikes in 30 s = 360/hour: inside the budget
    assert free.false_alarms_per_hour["a"] == pytest.approx(360.0)
    strict = tune_thresholds(timelines, REFERENCES, [10.0] * 3, LABELS, EventSettings(), max_false_alarms=100.0, per_class=True)
    assert strict.no_operating_point == ["a"] and strict.thresholds["a"] == GRID[-1]  # every event costs a spike
    assert "one threshold per class: events found at <= 100 false alarms per hour per class" == strict.criterion


def _two_class_timeline(events, seconds=10.0, step=0.1):
    """Class a scores 0.85 inside its events, class b 0.45 inside its own; both 0.1 elsewhere."""
    level = {"a": 0.85, "b": 0.45}
    return [Scores(k * step, (k + 1) * step, np.array([next((level[l] for on, off, l in events if l == label and on <= (k + 0.5) * step < off), 0.1)
                                                        for label in LABELS])) for k in range(int(seconds / step))]


def test_one_shared_threshold_pools_the_classes_and_covers_classes_without_validation_events(capsys):
    references = [[(1.0, 2.0, "a"), (5.0, 6.0, "b")], [(2.0, 3.0, "a"), (6.0, 7.0, "a")], [(3.0, 4.0, "a")]]
    timelines = [_two_class_timeline(r) for r in references]
    own = tune_thresholds(timelines, references, [10.0] * 3, LABELS, EventSettings(), per_class=True)
    assert own.thresholds == {"a": 0.85, "b": 0.45}  # each class's best F1: b's one validation event sets b's threshold
    shared = tune_thresholds(timelines, references, [10.0] * 3, LABELS, EventSettings())
    assert shared.thresholds == {"a": 0.45, "b": 0.45}  # pooled: 5 of 5 events (0.45) beats 4 of 5 (0.85)
    assert shared.f1 == {"a": 1.0, "b": 1.0} and shared.criterion == "one threshold for all classes: event F1"
    only_a = tune_thresholds(timelines[1:], references[1:], [10.0] * 2, LABELS, EventSettings())
    assert only_a.unseen == ["b"] and only_a.thresholds == {"a": 0.85, "b": 0.85}  # b gets the shared threshold, not 0.5
    assert "hold no ['b'] event; their thresholds are the shared one" in capsys.readouterr().err


def test_the_shared_thresholds_budget_is_per_hour_in_total_not_per_class():
    """3 spikes of a in 30 s are 360 false alarms an hour: inside a budget of 200 per class for two classes (400),
    outside a budget of 200 in total."""
    timelines = [_timeline(r, spike=5.0) for r in REFERENCES]
    references = [r + [(7.2, 7.5, "b")] for r in REFERENCES]  # b has events (never found), so both classes are seen
    shared = tune_thresholds(timelines, references, [10.0] * 3, LABELS, EventSettings(), max_false_alarms=200.0)
    assert shared.no_operating_point == LABELS and "200 false alarms per hour in total" in shared.criterion
    roomy = tune_thresholds(timelines, references, [10.0] * 3, LABELS, EventSettings(), max_false_alarms=400.0)
    assert roomy.thresholds["a"] == 0.85 and roomy.recall["a"] == 1.0
