"""Event F1 (sed_eval), PSDS and segment mAP (sed_scores_eval) and false alarms on events whose answers are worked out by hand."""

import numpy as np
import pytest

from earmark.evaluation import ScoreTrack, detection_latency, event_metrics, false_alarms, psds, segment_map

LABELS = ["a", "b"]
REFERENCE = {"f1": [(1.0, 3.0, "a"), (5.0, 7.0, "b")], "f2": []}


def _perfect_scores(reference, seconds=10.0, hop=0.1):
    timestamps = np.round(np.arange(0, seconds + hop / 2, hop), 6)
    tracks = {}
    for file_id, events in reference.items():
        probs = np.zeros((len(timestamps) - 1, len(LABELS)))
        for onset, offset, label in events:
            probs[(timestamps[:-1] >= onset) & (timestamps[:-1] < offset), LABELS.index(label)] = 1.0
        tracks[file_id] = ScoreTrack(timestamps, probs)
    return tracks


def test_a_perfect_prediction_scores_one_everywhere():
    m = event_metrics(REFERENCE, REFERENCE, LABELS)
    assert m["onset"]["f1"] == m["onset_offset"]["f1"] == m["onset_offset"]["macro_f1"] == 1.0
    assert m["references"] == m["detections"] == 2
    p = psds(_perfect_scores(REFERENCE), REFERENCE, {"f1": 10.0, "f2": 10.0}, LABELS)
    assert p["psds1"] == pytest.approx(1.0) and p["psds2"] == pytest.approx(1.0) and p["excluded"] == []
    assert false_alarms(REFERENCE, REFERENCE, {"f1": 10.0, "f2": 10.0})["false_alarms"] == 0


def test_segment_map_ranks_named_events_and_any_sound_apart():
    durations = {"f1": 10.0, "f2": 10.0}
    perfect = segment_map(_perfect_scores(REFERENCE), REFERENCE, durations, LABELS)
    assert perfect["mAP"] == pytest.approx(1.0) and perfect["any_label"] == pytest.approx(1.0)
    # every event heard where it sounds, under the other label: no class ranks its own segments first, yet any sound does
    swapped = {"f1": [(1.0, 3.0, "b"), (5.0, 7.0, "a")], "f2": []}
    misnamed = segment_map(_perfect_scores(swapped), REFERENCE, durations, LABELS)
    assert misnamed["mAP"] < 0.15 and misnamed["any_label"] == pytest.approx(1.0)
    assert set(misnamed["per_class"]) == {"a", "b"} and misnamed["segment_seconds"] == 1.0
    with pytest.raises(ValueError, match="no events"):
        segment_map(_perfect_scores({"f1": []}), {"f1": []}, {"f1": 10.0}, LABELS)


def test_a_shifted_prediction_scores_what_the_collars_give_by_hand():
    # a: onset 0.3 s late, offset 0.8 s late (<= 50% of its 2 s length); b: onset 0.1 s late, offset 1.1 s late (> 1.0 s).
    shifted = {"f1": [(1.3, 3.8, "a"), (5.1, 8.1, "b")], "f2": []}
    tight = event_metrics(REFERENCE, shifted, LABELS, collar=0.2)
    assert tight["onset"]["f1"] == pytest.approx(0.5)  # only b's onset is within 0.2 s
    assert tight["onset_offset"]["f1"] == 0.0  # a fails its onset, b its offset
    assert tight["per_class"]["a"]["onset_f1"] == 0.0 and tight["per_class"]["b"]["onset_f1"] == 1.0
    loose = event_metrics(REFERENCE, shifted, LABELS, collar=0.5)
    assert loose["onset"]["f1"] == 1.0
    assert loose["onset_offset"]["f1"] == pytest.approx(0.5)  # a's 0.8 s offset error is within max(0.5, 0.5 x 2 s)
    assert loose["onset_offset"]["precision"] == pytest.approx(0.5) and loose["onset_offset"]["recall"] == pytest.approx(0.5)
    assert loose["per_class"]["a"]["onset_offset_f1"] == 1.0 and loose["per_class"]["b"]["onset_offset_f1"] == 0.0


def test_matching_is_optimal_not_greedy():
    # Greedy earliest-reference-first pairs (1.0, 1.15) and then finds nothing within 0.2 s of 1.3; optimal finds two pairs.
    reference = {"f": [(1.0, 2.0, "a"), (1.3, 2.3, "a")]}
    detections = {"f": [(1.15, 2.15, "a"), (0.9, 1.9, "a")]}
    assert event_metrics(reference, detections, ["a"], collar=0.2)["onset"]["f1"] == 1.0


def test_false_alarms_count_detections_starting_outside_collared_events_per_background_minute():
    reference = {"long": [(10.0, 12.0, "a")], "quiet": []}
    detections = {"long": [(10.1, 12.0, "a"), (12.1, 12.5, "a"), (30.0, 31.0, "b"), (5.0, 11.0, "b")], "quiet": [(3.0, 4.0, "a")]}
    fa = false_alarms(reference, detections, {"long": 60.0, "quiet": 30.0}, collar=0.2)
    # (12.1, 12.5) starts inside the event widened to (9.8, 12.2); (5.0, 11.0) starts in background and counts
    assert fa["false_alarms"] == 3
    assert fa["background_minutes"] == pytest.approx((60 - 2.4 + 30) / 60)
    assert fa["per_minute"] == pytest.approx(3 / fa["background_minutes"])


def test_psds_leaves_out_classes_without_references_and_refuses_an_empty_reference():
    only_a = {"f1": [(1.0, 3.0, "a")]}
    p = psds(_perfect_scores(only_a), only_a, {"f1": 10.0}, LABELS)
    assert p["classes"] == ["a"] and p["excluded"] == ["b"] and p["psds1"] == pytest.approx(1.0)
    assert p["psds2"] is None  # its cross-trigger term needs a second class
    with pytest.raises(ValueError, match="no events"):
        psds(_perfect_scores({"f1": []}), {"f1": []}, {"f1": 10.0}, LABELS)


def test_a_class_without_references_has_no_f1_and_stays_out_of_the_class_mean():
    m = event_metrics({"f": [(1.0, 2.0, "a")]}, {"f": [(1.0, 2.0, "a"), (5.0, 6.0, "b")]}, LABELS)
    assert m["per_class"]["b"] == {"onset_f1": None, "onset_offset_f1": None, "references": 0, "detections": 1}
    assert m["onset"]["macro_f1"] == 1.0 and m["onset"]["precision"] == pytest.approx(0.5)


def test_a_class_never_detected_counts_as_zero_in_the_class_mean():
    # sed_eval leaves b's F1 at NaN (precision 0/0) and its class-wise mean would skip it, reporting 1.0.
    m = event_metrics(REFERENCE, {"f1": [(1.0, 3.0, "a")], "f2": []}, LABELS)
    assert m["per_class"]["b"]["onset_f1"] == 0.0 and m["onset"]["macro_f1"] == pytest.approx(0.5)
    assert m["onset"]["f1"] == pytest.approx(2 / 3)  # P 1/1, R 1/2
    silent = event_metrics(REFERENCE, {"f1": [], "f2": []}, LABELS)["onset"]
    assert silent == {"f1": 0.0, "precision": None, "recall": 0.0, "macro_f1": 0.0}


def test_detections_for_unlisted_files_are_refused():
    with pytest.raises(ValueError, match="no reference"):
        event_metrics({"f1": []}, {"f9": [(0.0, 1.0, "a")]}, ["a"])


def test_detection_latency_pairs_hits_by_label_and_onset_collar():
    reference = {"f": [(1.0, 2.0, "a"), (3.0, 4.0, "b"), (6.0, 7.0, "a")], "g": [(0.5, 1.0, "a")]}
    detections = {"f": [(1.1, 2.0, "a", 1.25), (3.05, 4.0, "a", 3.2), (6.0, 6.5, "a", 6.4)],  # wrong label for b: no hit
                  "g": [(1.5, 2.0, "a", 1.6)]}  # outside the collar
    latency = detection_latency(reference, detections, collar=0.2)
    assert latency["hits"] == 2
    assert latency["median"] == pytest.approx(0.325) and latency["p90"] == pytest.approx(0.385)
    assert detection_latency({"f": [(1.0, 2.0, "a")]}, {"f": []})["median"] is None


def test_a_misnamed_detection_is_a_miss_by_label_and_a_hit_for_any_label():
    misnamed = {"f1": [(1.0, 3.0, "b"), (5.0, 7.0, "b")], "f2": []}  # a heard at the right time, called b
    m = event_metrics(REFERENCE, misnamed, LABELS)
    assert m["onset"]["f1"] == pytest.approx(0.5) and m["any_label"]["onset"]["f1"] == 1.0
    assert m["any_label"]["onset_offset"]["recall"] == 1.0
