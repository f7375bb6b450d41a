"""`earmark eval` end to end: tone soundscapes with known answers, demo data for an .onnx and for its checkpoint."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from earmark.audio.synth import synthesize
from earmark.cli import main
from earmark.engine.checkpoint import save_checkpoint
from earmark.export import export_onnx, session
from earmark.students import create_student, student_checkpoint_meta

from ..runtime.models import SAMPLE_RATE, export_detector, tone_track

TONES = [(1.0, 2.0, 1000.0), (3.5, 4.3, 3000.0), (5.0, 6.5, 1000.0), (5.5, 6.0, 3000.0)]
NAMES = {1000.0: "tone_1k", 3000.0: "tone_3k"}


def _tone_soundscapes(folder):
    """One file with the four tones, one of background noise only; a DESED TSV (the quiet file has an empty label)."""
    folder.mkdir()
    sf.write(folder / "tones.wav", tone_track(8.0, TONES), SAMPLE_RATE)
    sf.write(folder / "quiet.wav", tone_track(6.0, [], seed=1), SAMPLE_RATE)
    with open(folder / "strong.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["filename", "onset", "offset", "event_label"])
        writer.writerows([["tones.wav", on, off, NAMES[freq]] for on, off, freq in TONES] + [["quiet.wav", "", "", ""]])
    return folder / "strong.tsv"


def test_eval_of_a_tone_detector_on_tone_soundscapes(tmp_path, capsys):
    model = export_detector(tmp_path / "tones.onnx", frame=True, hop=0.1)
    tsv = _tone_soundscapes(tmp_path / "scapes")
    assert main(["eval", str(model), str(tsv), "--median", "3", "--collar", "0.2", "0.5", "--out", str(tmp_path / "ev")]) == 0
    printed = capsys.readouterr().out
    r = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert r["kind"] == "soundscapes" and r["files"] == 2 and r["evaluated"] == str(model)
    for collar in ("0.2", "0.5"):
        events = r["events"][collar]
        assert events["onset"]["f1"] == 1.0 and events["onset_offset"]["f1"] == 1.0
        assert events["references"] == events["detections"] == 4
    assert r["false_alarms"]["false_alarms"] == 0 and r["false_alarms"]["background_minutes"] > 6 / 60
    assert r["psds"]["psds1"] > 0.9 and r["psds"]["psds2"] is not None
    assert r["postprocess"]["median"] == 3
    # frames of 10 ms decided every 0.1-s hop, median over 3 frames: each ON is announced within a hop (+ a frame)
    assert r["latency"]["hits"] == 4 and 0 < r["latency"]["median"] <= r["latency"]["p90"] <= 0.13
    assert "detection latency" in printed
    for row in r["per_file"]:
        assert row["timeline"].endswith(".png") and open(row["timeline"], "rb").read(4) == b"\x89PNG"
    assert "PSDS1" in printed and "tone_1k" in printed and "tone_3k" in printed


def test_a_scene_classifier_on_soundscapes_is_warned_about(tmp_path, capsys):
    """`listen` reports scenes for objective=classify, so eval finds no events and says why."""
    import dataclasses

    import onnx

    from earmark.audio.metadata import METADATA_KEY, ModelMetadata
    from earmark.export.onnx_export import attach_metadata

    model = export_detector(tmp_path / "tones.onnx", frame=True)
    graph = onnx.load(str(model))
    meta = ModelMetadata.from_json({p.key: p.value for p in graph.metadata_props}[METADATA_KEY])
    attach_metadata(graph, dataclasses.replace(meta, objective="classify"))
    onnx.save(graph, str(tmp_path / "scenes.onnx"))
    tsv = _tone_soundscapes(tmp_path / "scapes")
    assert main(["eval", str(tmp_path / "scenes.onnx"), str(tsv), "--out", str(tmp_path / "ev"), "--timelines", "0"]) == 0
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["events"]["0.2"]["detections"] == 0
    assert "classifies scenes" in capsys.readouterr().err


def test_eval_refuses_data_whose_labels_the_model_lacks(tmp_path, capsys):
    model = export_detector(tmp_path / "tones.onnx", frame=True)
    tsv = _tone_soundscapes(tmp_path / "scapes")
    tsv.write_text(tsv.read_text().replace("tone_3k", "siren"))
    assert main(["eval", str(model), str(tsv), "--out", str(tmp_path / "ev")]) == 1
    assert "not among the model's labels" in capsys.readouterr().err


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Demo data and an untrained detector student: its checkpoint and the ONNX that `earmark export` writes from it."""
    root = tmp_path_factory.mktemp("demo")
    data = synthesize(root / "data", seed=3, clips_per_class=3, soundscapes=2)
    labels = sorted({row["category"] for row in csv.DictReader(open(data.clips_csv))})
    torch.manual_seed(0)
    model = create_student("tfsepnet40", len(labels), "clip")
    save_checkpoint(root / "ckpt", model.state_dict(),
                    student_checkpoint_meta(model, "tfsepnet40", labels, "clip", objective="detect", window_seconds=1.0))
    return data, root / "ckpt", export_onnx(root / "ckpt", root / "student.onnx").path


@pytest.mark.parametrize("data_kind", ["soundscapes", "clips"])
def test_a_checkpoint_evaluates_as_its_onnx_export(demo, tmp_path, data_kind):
    data, ckpt, onnx_path = demo
    manifest = data.soundscapes_tsv if data_kind == "soundscapes" else data.clips_csv
    results = []
    for model in (onnx_path, ckpt):
        assert main(["eval", str(model), str(manifest), "--out", str(tmp_path / model.name), "--timelines", "1"]) == 0
        results.append(json.loads((tmp_path / model.name / "results.json").read_text()))
    strip = lambda r: {k: v for k, v in r.items() if k not in ("model", "evaluated", "rtf", "per_file", "confusion")}
    assert strip(results[0]) == strip(results[1]) and results[1]["evaluated"].startswith("its fp32 ONNX export")
    if data_kind == "clips":
        assert set(results[0]) >= {"accuracy", "macro_accuracy", "map"}
        assert (tmp_path / ckpt.name / "confusion.png").stat().st_size > 5_000
    else:
        assert [("timeline" in row) for row in results[0]["per_file"]] == [True, False]


def test_clip_accuracy_is_the_exported_model_on_each_one_second_clip(demo, tmp_path):
    """Demo clips last one window: eval's accuracy must equal ONNX Runtime's on the clip's own features."""
    from earmark.audio.features import compute_features
    from earmark.audio.io import load_audio
    from earmark.audio.manifest import read_manifest
    from earmark.runtime import load_backend

    data, _, onnx_path = demo
    assert main(["eval", str(onnx_path), str(data.clips_csv), "--out", str(tmp_path)]) == 0
    accuracy = json.loads((tmp_path / "results.json").read_text())["accuracy"]
    meta = load_backend(onnx_path).metadata
    sess, manifest = session(onnx_path), read_manifest(data.clips_csv)
    hits = []
    for clip in manifest.clips:
        wave = load_audio(clip.path, meta.frontend.sample_rate)
        features = compute_features(meta.frontend, np.pad(wave, (0, max(0, meta.frontend.sample_rate - wave.size))))
        probs = sess.run(None, {"features": features[None, None, :, :meta.input_frames].astype(np.float32)})[-1][0]
        hits.append(meta.labels[int(probs.argmax())] == clip.labels[0])
    assert accuracy == pytest.approx(np.mean(hits))


def test_eval_says_which_folds_it_scored_and_scores_one_when_asked(demo, tmp_path, capsys):
    data, _, onnx_path = demo
    assert main(["eval", str(onnx_path), str(data.clips_csv), "--out", str(tmp_path / "all")]) == 0
    every = json.loads((tmp_path / "all" / "results.json").read_text())
    assert "(every fold: pass --fold F" in capsys.readouterr().out and len(every["folds"]) > 1
    assert main(["eval", str(onnx_path), str(data.clips_csv), "--out", str(tmp_path / "three"), "--fold", "3"]) == 0
    three = json.loads((tmp_path / "three" / "results.json").read_text())
    assert f"scored folds 3 of {data.clips_csv}\n" in capsys.readouterr().out
    assert three["folds"] == [3] and 0 < three["clips"] < every["clips"]
    assert main(["eval", str(onnx_path), str(data.clips_csv), "--fold", "9"]) == 1
    assert "has no clips in fold 9; its folds are [" in capsys.readouterr().err
