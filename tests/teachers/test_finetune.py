"""Fine-tuning a tiny teacher on the synthetic data beats chance clearly; predict writes a cache by clip id."""

import json
import subprocess
import sys

import numpy as np
import pytest

from earmark.audio.manifest import read_manifest
from earmark.audio.spec import PRESETS
from earmark.audio.synth import synthesize
from earmark.engine import load_model
from earmark.engine.metrics import average_precision
from earmark.teachers.cache import TeacherCache
from earmark.teachers.finetune import FinetuneConfig, finetune

PRESETS_CPJKU = PRESETS["cpjku"]
RESIZE = {"length": "resize"}  # 1-s clips: positions cut to the clip instead of ASiT's padding to 592 frames (fast on a CPU)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("ft-synth"), seed=3, clips_per_class=20, soundscapes=10)


@pytest.fixture(scope="module")
def teacher(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft")
    path = finetune(FinetuneConfig("asit_tiny", str(data.clips_csv), str(out), overrides=RESIZE, epochs=40, batch_size=32, lr=2e-3,
                                   mixup_alpha=0.0, progress=False))  # 0.41-0.44 test accuracy over seeds 0-3
    return path, json.loads((out / "results.json").read_text())


def test_finetuning_beats_chance_clearly(teacher):
    _, results = teacher
    assert results["test"]["accuracy"] >= 2.5 * results["chance"]["accuracy"]


def test_predict_writes_a_cache_indexed_by_clip_id(teacher, data, tmp_path):
    path, _ = teacher
    run = subprocess.run([sys.executable, "-m", "earmark.cli", "predict", str(path), "--data", str(data.clips_csv),
                          "--out", str(tmp_path / "cache"), "--embeddings"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    cache = TeacherCache.open(tmp_path / "cache")
    manifest = read_manifest(data.clips_csv)
    ids = [c.id for c in manifest.clips[::-1][:5]]  # any order: rows are found by id
    assert cache.lookup(ids).shape == (5, len(manifest.labels)) and cache.has("embeddings")


def test_average_precision_by_hand():
    scores = np.array([[0.9], [0.8], [0.1]])
    targets = np.array([[1], [0], [1]])
    assert average_precision(scores, targets) == pytest.approx((1 / 1 + 2 / 3) / 2)


def test_frame_level_finetuning_on_strong_labels(data, tmp_path):
    config = FinetuneConfig("atst_frame_tiny", str(data.soundscapes_tsv), str(tmp_path), head="linear", task="frame",
                            clip_seconds=10.0, epochs=1, batch_size=4, lr=1e-3, progress=False, val_fold=1, test_fold=2)
    path = finetune(config)
    results = json.loads((tmp_path / "results.json").read_text())["test"]
    assert 0.0 <= results["frame_f1"] <= 1.0 and "mAP" in results
    model, meta = load_model(path, "teacher")
    assert meta.task == "frame" and model.task == "frame"


def test_an_ensemble_cache_holds_the_mean_of_its_members_logits(data, tmp_path):
    import torch

    from earmark.students import create_student
    from earmark.teachers.predict import Predictor, predict_to_cache

    manifest = read_manifest(data.clips_csv)
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = create_student("tfsepnet16", len(manifest.labels)).eval()
        members.append(Predictor(model, PRESETS_CPJKU, f"member-{seed}"))
    alone = [TeacherCache.open(predict_to_cache([m], manifest, tmp_path / m.sha256, 1.0)) for m in members]
    both = TeacherCache.open(predict_to_cache(members, manifest, tmp_path / "ensemble", 1.0))
    ids = [c.id for c in manifest.clips[:8]]
    expected = (alone[0].lookup(ids) + alone[1].lookup(ids)) / 2
    assert np.allclose(both.lookup(ids), expected, atol=2e-2)  # float16 storage
    assert both.key not in (alone[0].key, alone[1].key)


@pytest.fixture(scope="module")
def teacher_cache(teacher, data, tmp_path_factory):
    from earmark.audio.spec import get_frontend
    from earmark.engine.checkpoint import checkpoint_hash
    from earmark.teachers.predict import Predictor, predict_to_cache

    path, _ = teacher
    model, meta = load_model(path, "teacher")
    predictor = Predictor(model, get_frontend(meta.frontend), checkpoint_hash(path))
    return predict_to_cache([predictor], read_manifest(data.clips_csv), tmp_path_factory.mktemp("kd") / "cache", 1.0)


def test_kd_stage_learns_the_teacher_without_labels(teacher, teacher_cache, data, tmp_path):
    config = FinetuneConfig("asit_tiny", str(data.clips_csv), str(tmp_path), overrides=RESIZE, epochs=40, batch_size=32, lr=2e-3,
                            mixup_alpha=0.0, progress=False, kd_cache=str(teacher_cache), kd_gamma=0.5)
    finetune(config)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["test"]["accuracy"] >= 2 * results["chance"]["accuracy"]  # labels reach it only through the teacher's logits


def test_kd_stage_refuses_a_cache_of_another_label_set(teacher_cache, data, tmp_path):
    config = FinetuneConfig("asit_tiny", str(data.soundscapes_tsv), str(tmp_path), epochs=1, progress=False, kd_cache=str(teacher_cache))
    with pytest.raises(ValueError, match="KD loss .* single-label|lacks clips|labels"):
        finetune(config)


def test_algorithm_a1_iterates_pretraining_and_kd_with_decaying_learning_rates(teacher_cache, data, tmp_path):
    out = tmp_path / "a1"
    command = [sys.executable, "-m", "earmark.cli", "pretrain", "acmsskd", "--data", str(data.clips_csv), "--out", str(out),
               "--teacher", "acmsskd_tiny", "--steps", "2", "--batch-size", "8", "--lr", "1e-3", "--clip-seconds", "1",
               "--iterations", "2", "--kd-data", str(data.clips_csv), "--kd-cache", str(teacher_cache), "--kd-epochs", "1",
               "--kd-lr", "1e-4"]
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"wrote {out / 'iteration2' / 'kd' / 'teacher'}" in run.stdout and "earmark distill" in run.stdout
    history = json.loads((out / "iterations.json").read_text())
    assert [h["ssl_lr"] for h in history] == pytest.approx([1e-3, 8e-4]) and [h["kd_lr"] for h in history] == pytest.approx([1e-4, 8e-5])
    second_ssl = json.loads((out / "iteration2" / "ssl" / "config.json").read_text())
    assert second_ssl["init"] == str(out / "iteration1" / "kd" / "teacher")  # iteration 2 starts from iteration 1's distilled model
    model, meta = load_model(out / "iteration2" / "kd" / "teacher", "teacher")
    assert meta.model == "acmsskd_tiny" and meta.labels == read_manifest(data.clips_csv).labels.to_list()
    weights = out / "iteration1" / "ssl" / "teacher" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = subprocess.run(command, capture_output=True, text=True)  # a finished loop is not trained again
    assert again.returncode == 0 and weights.stat().st_mtime_ns == stamp


def test_algorithm_a1_without_kd_data_says_what_to_pass(data, tmp_path):
    run = subprocess.run([sys.executable, "-m", "earmark.cli", "pretrain", "acmsskd", "--data", str(data.clips_csv),
                          "--out", str(tmp_path), "--iterations", "2"], capture_output=True, text=True)
    assert run.returncode != 0 and "--kd-data" in run.stderr and "Traceback" not in run.stderr
