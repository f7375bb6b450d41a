"""Streaming equals offline, post-processing rules, event F1 on a known soundscape, and clear refusals."""

import subprocess
import sys

import numpy as np
import onnx
import pytest
import soxr

from earmark.runtime import EventSettings, EventTracker, SceneTracker, Scores, StreamingClassifier, classify_offline

from .models import LABELS, SAMPLE_RATE, export_detector, tone_track

TONES = [(1.0, 2.0, 1000.0), (3.5, 4.3, 3000.0), (5.0, 6.5, 1000.0), (5.5, 6.0, 3000.0)]


def _events(results, settings=None):
    tracker = EventTracker(LABELS, settings or EventSettings())
    events = []
    for result in results:
        for segment in result.segments:
            events += tracker.push(segment)[0]
    end = results[-1].end if results else 0.0
    events += tracker.flush(end)[0]
    return sorted((round(e.onset, 4), round(e.offset, 4), e.label) for e in events)


@pytest.mark.parametrize("frame", [False, True])
def test_streaming_in_random_blocks_equals_offline(tmp_path, frame):
    import soundfile as sf

    model = export_detector(tmp_path / "m.onnx", frame=frame)
    wave = tone_track(8.0, TONES)
    sf.write(tmp_path / "a.wav", wave, SAMPLE_RATE)
    offline = classify_offline(model, tmp_path / "a.wav")
    stream = StreamingClassifier(model)
    rng = np.random.default_rng(0)
    results, i = [], 0
    while i < wave.size:
        n = int(rng.integers(1, 4000))
        results += stream.push(wave[i:i + n], SAMPLE_RATE)
        i += n
    results += stream.flush()
    assert len(results) == len(offline) > 20
    for a, b in zip(results, offline):
        assert a.end == pytest.approx(b.end) and np.abs(a.clip - b.clip).max() < 1e-3
    assert _events(results) == _events(offline) and len(_events(offline)) == 4


def test_other_rates_are_resampled_in_the_stream(tmp_path):
    model = export_detector(tmp_path / "m.onnx", frame=True)
    wave = soxr.resample(tone_track(6.0, TONES[:2]), SAMPLE_RATE, 44100)
    stream = StreamingClassifier(model)
    results = []
    for start in range(0, wave.size, 1234):
        results += stream.push(wave[start:start + 1234], 44100)
    results += stream.flush()
    assert [e[2] for e in _events(results)] == ["tone_1k", "tone_3k"]


def test_input_at_another_rate_gives_every_window_when_resampling_each_block_would(tmp_path):
    """Input is resampled once per window, not per block: every push returns the windows, scores and times that
    resampling each block as it arrives gives, and the flush the same tail."""
    model = export_detector(tmp_path / "m.onnx", frame=True)
    wave = soxr.resample(tone_track(4.0, TONES[:1]), SAMPLE_RATE, 44100).astype(np.float32)
    stream, reference = StreamingClassifier(model), StreamingClassifier(model)
    per_block = soxr.ResampleStream(44100, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    rng = np.random.default_rng(1)
    windows, i = 0, 0

    def same(got, want):
        return [(r.end, r.clip.tolist()) for r in got] == [(r.end, r.clip.tolist()) for r in want]

    while i < wave.size:
        block = wave[i:i + int(rng.integers(1, 3000))]
        i += block.size
        got = stream.push(block, 44100)
        assert same(got, reference.push(per_block.resample_chunk(block), SAMPLE_RATE))
        windows += len(got)
    tail = reference.push(per_block.resample_chunk(np.zeros(0, np.float32), last=True), SAMPLE_RATE) + reference.flush()
    assert same(stream.flush(), tail) and windows > 5
    assert stream.seconds_processed == reference.seconds_processed


def test_events_on_a_soundscape_have_onsets_within_one_hop(tmp_path):
    model = export_detector(tmp_path / "m.onnx", frame=True, hop=0.1)
    wave = tone_track(8.0, TONES)
    stream = StreamingClassifier(model)
    results = stream.push(wave, SAMPLE_RATE) + stream.flush()
    estimated = _events(results, EventSettings(median=3))
    reference = sorted((on, off, "tone_1k" if f == 1000 else "tone_3k") for on, off, f in TONES)
    assert len(estimated) == len(reference)
    for (on, _, label), (e_on, _, e_label) in zip(reference, estimated):
        assert label == e_label and abs(on - e_on) <= stream.plan.hop_seconds


def _seg(t, *probs):
    return Scores(t, t + 0.1, np.array(probs, dtype=np.float32))


def test_hysteresis_min_duration_and_gap_merging():
    tracker = EventTracker(("a",), EventSettings(default_threshold=0.6, off_ratio=0.5, min_duration=0.25, max_gap=0.15))
    changes, events = [], []
    for i, p in enumerate([0.1, 0.7, 0.4, 0.35, 0.1, 0.9, 0.2, 0.1, 0.1, 0.7, 0.1, 0.1, 0.1]):
        e, c = tracker.push(_seg(i / 10, p))
        events += e
        changes += c
    # 0.4 and 0.35 stay on (hysteresis, off at 0.3); the 0.1 at 0.4 s is a gap of one segment merged with the 0.9;
    # the lone 0.7 at 0.9 s is shorter than the minimum duration and never announced.
    assert [(round(e.onset, 2), round(e.offset, 2)) for e in events] == [(0.1, 0.6)]
    assert changes == [("a", True), ("a", False)]


def test_an_event_is_stamped_with_the_stream_time_its_on_was_announced():
    """The median filter's centre lag and the minimum duration both delay the ON, and the record says by how much."""
    tracker = EventTracker(("a",), EventSettings(median=3, min_duration=0.2))
    events = []
    for i, p in enumerate([0.0, 0.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.0, 0.0, 0.0]):
        events += tracker.push(_seg(i / 10, p), now=i / 10 + 0.15)[0]
    (event,) = events
    # onset 0.2 (the centre of 0.1-0.3 first has a median above threshold at 0.4); min duration 0.2 is met by the
    # centre segment ending at 0.4, which the median sees when the segment ending at 0.5 arrives: now = 0.4 + 0.15.
    assert event.onset == pytest.approx(0.2) and event.detected == pytest.approx(0.55)
    record = event.to_record()
    assert record["detected"] == 0.55 and record["latency"] == 0.35


def test_median_filter_removes_a_one_segment_spike():
    tracker = EventTracker(("a",), EventSettings(median=3))
    events = []
    for i, p in enumerate([0.0, 0.0, 1.0, 0.0, 0.0, 0.0]):
        events += tracker.push(_seg(i / 10, p))[0]
    assert events == [] and tracker.flush(1.0)[0] == []


def test_scene_changes_only_after_the_hold_time():
    scenes = SceneTracker(("park", "street"), smooth=1, hold=1.0)
    records = [scenes.push(np.array(p), t) for t, p in [(0, [0.9, 0.1]), (0.5, [0.2, 0.8]), (1.0, [0.9, 0.1]), (1.5, [0.2, 0.8]),
                                                          (2.0, [0.2, 0.8]), (2.5, [0.2, 0.8])]]
    assert [r["label"] for r in records if r] == ["park", "street"]
    assert records[4] is None and records[5]["time"] == 2.5


def test_a_model_without_earmark_metadata_is_refused(tmp_path):
    path = export_detector(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match="has no earmark metadata.*earmark export"):
        StreamingClassifier(path)
    with pytest.raises(FileNotFoundError, match="no such model"):
        StreamingClassifier(tmp_path / "missing.onnx")


def test_runtime_imports_without_torch():
    code = "import sys; sys.modules['torch'] = None; import earmark.runtime, earmark.runtime.cli, earmark.runtime.daemon"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_numpy_blas_runs_on_the_classifier_threads_while_it_works(tmp_path):
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    class Recording:  # records the BLAS pool size the model call sees
        def __init__(self, backend):
            self.backend, self.metadata, self.chunked, self.seen = backend, backend.metadata, backend.chunked, []

        def run(self, features):
            self.seen.append(blas_threads())
            return self.backend.run(features)

    with threadpool_limits(2, user_api="blas"):
        stream = StreamingClassifier(export_detector(tmp_path / "m.onnx"), threads=1)
        stream.backend = Recording(stream.backend)
        wave = tone_track(3.0, TONES[:1])
        assert stream.push(wave, SAMPLE_RATE) and stream.backend.seen
        assert all(seen == {1} for seen in stream.backend.seen)
        assert blas_threads() == {2}  # restored for the rest of the process
    with pytest.raises(ValueError, match="threads must be at least 1"):
        StreamingClassifier(tmp_path / "m.onnx", threads=0)



def test_the_median_filter_decides_the_first_and_last_segments_too():
    """An event in the stream's first or last segment is not lost to the filter's edges: the edge segment stands in for
    the ones beyond it, as a median filter with 'nearest' padding decides."""
    for probs, onset in (([0.9, 0.9, 0.0, 0.0, 0.0], 0.0), ([0.0, 0.0, 0.0, 0.9, 0.9], 0.3)):
        tracker = EventTracker(("a",), EventSettings(median=3))
        events = [e for i, p in enumerate(probs) for e in tracker.push(_seg(i / 10, p))[0]]
        events += tracker.flush(0.5)[0]
        assert [round(e.onset, 2) for e in events] == [onset], probs
    tracker = EventTracker(("a",), EventSettings(median=5))  # a stream shorter than the filter is decided at its end
    assert tracker.push(_seg(0.0, 0.9)) == ([], []) and [e.label for e in tracker.flush(0.1)[0]] == ["a"]
