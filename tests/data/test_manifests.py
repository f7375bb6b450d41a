"""Manifest readers, bad-input errors, datasets on the frame grid, and the synthetic demo data."""

import hashlib

import numpy as np
import pytest
import soundfile as sf
import torch

from earmark.audio import PRESETS, compute_features, load_audio
from earmark.audio.datasets_torch import ClipDataset, FrameDataset
from earmark.audio.labels import LabelSet
from earmark.audio.manifest import clip_fold, read_manifest
from earmark.audio.synth import synthesize


def _wav(path, seconds=1.0, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * rate), np.float32), rate)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("synth"), seed=0, clips_per_class=10, soundscapes=4)


def test_folder_per_class(tmp_path):
    for name in ("dog/a.wav", "dog/b.wav", "cat/c.flac"):
        _wav(tmp_path / name)
    m = read_manifest(tmp_path)
    assert m.labels.to_list() == ["cat", "dog"] and len(m) == 3 and m.clips[0].id == "cat/c.flac"


def test_esc50_tau_desed_and_multilabel(tmp_path):
    for name in ("a.wav", "b.wav", "c.wav"):
        _wav(tmp_path / "audio" / name)
    (tmp_path / "esc.csv").write_text("filename,fold,target,category\na.wav,1,0,dog\nb.wav,2,1,rain\n")
    esc = read_manifest(tmp_path / "esc.csv")
    assert [(c.id, c.fold, c.labels) for c in esc.clips] == [("a", 1, ("dog",)), ("b", 2, ("rain",))]
    (tmp_path / "tau.tsv").write_text("filename\tscene_label\taudio/a.wav\tpark\n".replace("\taudio", "\naudio"))
    assert read_manifest(tmp_path / "tau.tsv").clips[0].scene == "park"
    (tmp_path / "strong.tsv").write_text("filename\tonset\toffset\tevent_label\na.wav\t0.5\t1.0\tdog\na.wav\t0.1\t0.3\tcat\nc.wav\t\t\t\n")
    strong = read_manifest(tmp_path / "strong.tsv")
    assert strong.task == "frame" and strong.multi_label
    assert strong.by_id()["a"].events == ((0.1, 0.3, "cat"), (0.5, 1.0, "dog")) and strong.by_id()["c"].events == ()
    (tmp_path / "ml.csv").write_text('filename,labels\na.wav,"dog,cat"\nb.wav,rain\n')
    ml = read_manifest(tmp_path / "ml.csv")
    assert ml.multi_label and ml.by_id()["a"].labels == ("dog", "cat")


@pytest.mark.parametrize("content, problem", [
    ("filename,fold,target,category\na.wav,1,0,dog\na.wav,1,0,dog\n", "row 3: duplicated id 'a'"),
    ("filename,fold,target,category\nmissing.wav,1,0,dog\n", "row 2: audio file .*missing.wav does not exist"),
    ("filename,fold,target,category\na.wav,one,0,dog\n", "row 2: fold 'one' is not a number"),
])
def test_bad_rows_stop_with_the_row_named(tmp_path, content, problem):
    _wav(tmp_path / "audio" / "a.wav")
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(ValueError, match=problem):
        read_manifest(tmp_path / "m.csv")


@pytest.mark.parametrize("name, content", [
    ("m.csv", "file,fold,target,category\na.wav,1,0,dog\n"),
    ("s.tsv", "file\tonset\toffset\tevent_label\na.wav\t0.1\t0.5\tdog\n"),
    ("t.tsv", "audio\tscene_label\na.wav\tpark\n"),
    ("ml.csv", "clip,labels\na.wav,dog\n"),
])
def test_a_renamed_filename_column_is_one_sentence(tmp_path, name, content):
    _wav(tmp_path / "audio" / "a.wav")
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=r"has no 'filename'.* column \(its columns: \["):
        read_manifest(tmp_path / name)


def test_audioset_segment_csv_with_its_comment_lines_reads(tmp_path):
    _wav(tmp_path / "audio" / "--PJHxphWEs.wav")
    _wav(tmp_path / "audio" / "-0RWZT-miFs.wav")
    (tmp_path / "balanced_train_segments.csv").write_text(
        "# Segments csv created Sun Mar  5 10:54:25 2017\n"
        "# num_ytids=2, num_segs=2, num_unique_labels=3, num_positives=4\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"\n'
        '-0RWZT-miFs, 420.000, 430.000, "/m/03fwl,/m/04rlf"\n')
    m = read_manifest(tmp_path / "balanced_train_segments.csv")
    assert m.multi_label and m.by_id()["--PJHxphWEs"].labels == ("/m/09x0r", "/t/dd00088") and len(m.labels) == 4


def test_overlapping_or_touching_events_of_one_label_are_merged_and_said(tmp_path, caplog):
    _wav(tmp_path / "audio" / "a.wav")
    (tmp_path / "s.tsv").write_text("filename\tonset\toffset\tevent_label\na.wav\t0.4\t0.9\tdog\na.wav\t0.1\t0.5\tdog\n"
                                    "a.wav\t0.9\t1.2\tdog\na.wav\t0.2\t0.3\tcat\na.wav\t1.5\t1.8\tdog\n")
    clip = read_manifest(tmp_path / "s.tsv").clips[0]
    assert clip.events == ((0.1, 1.2, "dog"), (0.2, 0.3, "cat"), (1.5, 1.8, "dog"))  # as sed_scores_eval accepts them
    assert "2 events overlapped or touched another of their label" in caplog.text


def test_data_check_counts_clips_and_events_per_label_under_headers_that_say_so(tmp_path, capsys):
    from earmark.cli import main

    for name in ("a.wav", "b.wav"):
        _wav(tmp_path / "audio" / name, seconds=2.0)
    (tmp_path / "s.tsv").write_text("filename\tonset\toffset\tevent_label\na.wav\t0.1\t0.5\tdog\na.wav\t1.0\t1.5\tdog\n"
                                    "b.wav\t0.2\t0.3\tdog\nb.wav\t0.4\t0.6\tcat\n")
    assert main(["data", "check", str(tmp_path / "s.tsv"), "--no-decode"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()[1:4]]
    assert lines == [["label", "clips", "events"], ["cat", "1", "1"], ["dog", "2", "3"]]


def test_files_that_differ_only_by_extension_keep_it_in_their_ids(tmp_path):
    for name in ("mace.ogg", "mace.wav", "mace.flac", "bell.wav"):
        _wav(tmp_path / "audio" / name)
    assert sorted(read_manifest(tmp_path / "audio").ids) == ["bell", "mace.flac", "mace.ogg", "mace.wav"]
    (tmp_path / "m.csv").write_text("filename,fold,target,category\nmace.ogg,1,0,mace\nmace.wav,1,0,mace\nbell.wav,2,1,bell\n")
    assert read_manifest(tmp_path / "m.csv").ids == ["mace.ogg", "mace.wav", "bell"]


def test_onset_after_offset_and_unknown_labels(tmp_path):
    _wav(tmp_path / "audio" / "a.wav")
    (tmp_path / "s.tsv").write_text("filename\tonset\toffset\tevent_label\na.wav\t2.0\t1.0\tdog\n")
    with pytest.raises(ValueError, match="row 2: onset 2.0 is not before offset 1.0"):
        read_manifest(tmp_path / "s.tsv")
    (tmp_path / "e.csv").write_text("filename,fold,target,category\na.wav,1,0,dog\n")
    with pytest.raises(ValueError, match="'dog'.*not in the label set"):
        read_manifest(tmp_path / "e.csv", labels=LabelSet(["cat"]))


def test_skip_bad_reports_and_keeps_the_rest(tmp_path, caplog):
    _wav(tmp_path / "audio" / "a.wav")
    (tmp_path / "m.csv").write_text("filename,fold,target,category\na.wav,1,0,dog\nb.wav,1,0,dog\n")
    m = read_manifest(tmp_path / "m.csv", skip_bad=True)
    assert len(m) == 1 and len(m.skipped) == 1
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "b.wav" in caplog.text


def test_synth_is_deterministic_and_loads(synth, tmp_path):
    again = synthesize(tmp_path, seed=0, clips_per_class=10, soundscapes=4)
    digest = lambda root: hashlib.sha256(b"".join(p.read_bytes() for p in sorted((root / "audio").iterdir()))).hexdigest()
    assert digest(synth.root) == digest(again.root)
    clips = read_manifest(synth.clips_csv)
    assert len(clips.labels) >= 8 and len(clips) == 10 * len(clips.labels)
    scapes = read_manifest(synth.soundscapes_tsv)
    assert scapes.task == "frame" and all(1 <= len(c.events) <= 4 for c in scapes.clips)
    assert len(read_manifest(synth.scenes_tsv).labels) >= 4
    assert load_audio(clips.clips[0].path, 32000).shape == (32000,)


def test_synth_extra_test_clips_go_to_the_test_fold_and_change_nothing_else(synth, tmp_path):
    more = synthesize(tmp_path, seed=0, clips_per_class=10, soundscapes=4, extra_test_clips=3)
    clips, base = read_manifest(more.clips_csv), read_manifest(synth.clips_csv)
    extra = [c for c in clips.clips if c.id not in {b.id for b in base.clips}]
    assert len(extra) == 3 * len(base.labels) and {clip_fold(c) for c in extra} == {5}
    assert sorted(c.labels[0] for c in extra) == sorted(3 * list(base.labels))
    for name in [c.path.name for c in base.clips] + ["scape-003.wav"]:  # the training data and soundscapes, byte for byte
        assert (more.root / "audio" / name).read_bytes() == (synth.root / "audio" / name).read_bytes()


def test_synth_classes_are_learnable_but_not_trivial(synth):
    """Leave-one-fold-out nearest centroid on per-band peaks over the median: well above chance, below 100%."""
    m = read_manifest(synth.clips_csv)
    spec = PRESETS["cpjku"]
    feats = [compute_features(spec, load_audio(c.path, 32000)) for c in m.clips]
    x = np.stack([(f - np.median(f, axis=1, keepdims=True)).max(axis=1) for f in feats])
    y = np.array([m.labels.index(c.labels[0]) for c in m.clips])
    folds = np.array([c.fold for c in m.clips])
    hits = []
    for fold in range(1, 6):
        train = folds != fold
        centroids = np.stack([x[train & (y == k)].mean(0) for k in range(len(m.labels))])
        hits += list(np.argmin(((x[~train, None] - centroids[None]) ** 2).sum(-1), axis=1) == y[~train])
    chance = 1 / len(m.labels)
    assert 2 * chance < np.mean(hits) < 0.9


def test_clip_and_frame_datasets(synth):
    clips = ClipDataset(read_manifest(synth.clips_csv), 32000, 0.5, train=True)
    item = clips[3]
    assert item["wave"].shape == (16000,) and item["target"].sum() == 1
    again = ClipDataset(read_manifest(synth.clips_csv), 32000, 0.5, train=True)[3]
    assert torch.equal(item["wave"], again["wave"])  # crops depend on (seed, epoch, index) only
    scapes = read_manifest(synth.soundscapes_tsv)
    frames = FrameDataset(scapes, PRESETS["tfsepnet"], 10.0, 0.064)
    sample = frames[0]
    assert sample["frame_target"].shape == (156, len(scapes.labels))
    onset, offset, label = scapes.clips[0].events[0]
    active = sample["frame_target"][:, scapes.labels.index(label)].numpy()
    centres = (np.arange(156) + 0.5) * 0.064
    assert active[(centres >= onset) & (centres < offset)].all()
