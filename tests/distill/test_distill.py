"""KD losses, mixup with teacher targets, the teacher-output cache, QAT export, and the distill run."""

import json
import math
import os
import shutil
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

from earmark.audio.manifest import read_manifest
from earmark.cli import main
from earmark.distill import DistillConfig, distill, soft_kd, teacher_cache
from earmark.distill.losses import bce_kd, frame_kd
from earmark.distill.run import mixture_teacher
from earmark.engine import load_model
from earmark.teachers.cache import TeacherCache
from earmark.training import draw_mix, spec_augment


def test_soft_kd_equals_a_hand_computation():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    t = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([0, 1])
    T = 2.0
    ps, pt = np.exp(s.numpy() / T), np.exp(t.numpy() / T)
    ps, pt = ps / ps.sum(1, keepdims=True), pt / pt.sum(1, keepdims=True)
    kl_mean = (pt * (np.log(pt) - np.log(ps))).mean()  # averaged over batch and classes
    ce = -np.mean(np.log(np.exp(s.numpy())[[0, 1], [0, 1]] / np.exp(s.numpy()).sum(1)))
    expected = 0.02 * ce + 0.98 * T**2 * kl_mean
    assert soft_kd(s, t, y).item() == pytest.approx(expected, rel=1e-5)
    assert soft_kd(s, t, y, reduction="batchmean").item() == pytest.approx(0.02 * ce + 0.98 * T**2 * kl_mean * 3, rel=1e-5)


def test_bce_and_frame_kd():
    s, t, y = torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3)
    assert bce_kd(s, t, y).item() == pytest.approx(np.log(2), rel=1e-5)
    missed = torch.tensor([[-20.0, 20.0]])  # the teacher misses the labelled event and hears another class
    label = torch.tensor([[1.0, 0.0]])
    taught = lambda keep: bce_kd(torch.zeros(1, 2), missed, label, hard_weight=0.0, keep_labels=keep).item()
    bce = lambda target: torch.nn.functional.binary_cross_entropy_with_logits(torch.zeros(1, 2), torch.tensor([target])).item()
    assert taught(False) == pytest.approx(bce([0.0, 1.0]), abs=1e-6) and taught(True) == pytest.approx(bce([1.0, 1.0]), abs=1e-6)
    teacher_frames = torch.randn(2, 25, 3)  # e.g. ATST-Frame's 40 ms grid
    student_frames = torch.randn(2, 16, 3, requires_grad=True)  # TF-SepNet's 62.5 ms grid
    loss = frame_kd(student_frames, teacher_frames)
    loss.backward()
    assert torch.isfinite(loss) and student_frames.grad is not None


def test_mixup_mixes_hard_and_teacher_targets_with_one_permutation():
    torch.manual_seed(0)
    mix = draw_mix(6, alpha=0.3)
    x, y, t = torch.randn(6, 4), torch.eye(6), torch.randn(6, 6)
    assert torch.allclose(mix.inputs(x), mix.lam * x + (1 - mix.lam) * x[mix.perm])
    seen = []
    mix.loss(lambda yy, tt: seen.append((yy, tt)) or torch.tensor(0.0), y, t)
    (y0, t0), (y1, t1) = seen
    assert torch.equal(y1, y[mix.perm]) and torch.equal(t1, t[mix.perm]) and torch.equal(y0, y)


def test_cache_is_built_once_then_reused_and_a_stale_one_refused(synth_data, teacher_ckpt, tmp_path):
    manifest = read_manifest(synth_data.clips_csv)
    config = DistillConfig(data=str(synth_data.clips_csv), out=str(tmp_path), teachers=[str(teacher_ckpt)])
    calls = []
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: calls.append(type(m).__name__))
    try:
        cache = teacher_cache(config, manifest)
        first = len([c for c in calls if c == "TFSepNet"])
        calls.clear()
        again = teacher_cache(config, manifest)
        assert first > 0 and "TFSepNet" not in calls  # the teacher's forward is not called on the second run
    finally:
        handle.remove()
    ids = [c.id for c in manifest.clips[:3]]
    assert np.array_equal(cache.lookup(ids), again.lookup(ids))
    index = json.loads((tmp_path / "teacher-cache" / "index.json").read_text())
    index["key"] = "0" * 64
    (tmp_path / "teacher-cache" / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="made for another teacher.*rebuild"):
        teacher_cache(config, manifest)
    with pytest.raises(ValueError, match="lacks clips \\['nope'\\]"):
        TeacherCache.open(tmp_path / "teacher-cache").lookup(["nope"])


def test_label_set_mismatch_is_refused_before_training(synth_data, teacher_ckpt, tmp_path):
    scenes = DistillConfig(data=str(synth_data.scenes_tsv), out=str(tmp_path), teachers=[str(teacher_ckpt)])
    with pytest.raises(ValueError, match="trained on labels .* but the data has"):
        teacher_cache(scenes, read_manifest(synth_data.scenes_tsv))


def test_distill_with_kd_and_qat_writes_a_quantized_checkpoint(synth_data, teacher_ckpt, tmp_path):
    final = distill(DistillConfig(data=str(synth_data.clips_csv), out=str(tmp_path), teachers=[str(teacher_ckpt)],
                                  student="tfsepnet16", epochs=1, batch_size=16, qat=True, qat_epochs=1, progress=False))
    assert final.name == "student-int8" and (final / "earmark.json").is_file()
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"objective", "float", "int8", "chance"} and results["objective"] == "classify" and results["chance"]["accuracy"] == 1 / 8
    assert (tmp_path / "confusion.png").is_file() and (tmp_path / "float" / "curves.png").is_file()
    meta = json.loads((final / "earmark.json").read_text())
    assert meta["extra"]["quantization"]["backend"] == "earmark" and meta["extra"]["quantization"]["scope"] == "weights"  # the CPU default


@pytest.mark.slow  # torchrun launches two interpreters; tests/engine keeps a fast DDP test unmarked
def test_distill_under_torchrun_on_two_cpu_ranks(synth_data, teacher_ckpt, tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", "-m", "earmark.cli",
           "distill", "--teacher", str(teacher_ckpt), "--student", "tfsepnet16", "--data", str(synth_data.clips_csv),
           "--out", str(tmp_path), "--epochs", "2", "--batch-size", "8"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    state = torch.load(tmp_path / "float" / "state.pt", weights_only=True)
    assert state["train_state"]["epoch"] == 2 and (tmp_path / "student" / "model.safetensors").is_file()
    load_model(tmp_path / "student", "student")  # the best checkpoint rank 0 wrote loads
    assert "accuracy" in json.loads((tmp_path / "results.json").read_text())["float"]


def test_online_teacher_mode_runs_the_teacher_on_each_batch(synth_data, teacher_ckpt, tmp_path):
    calls = []
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: calls.append(type(m).__name__))
    try:
        distill(DistillConfig(data=str(synth_data.clips_csv), out=str(tmp_path), teachers=[str(teacher_ckpt)], student="tfsepnet16",
                              epochs=1, batch_size=16, online_teacher=True, progress=False))
    finally:
        handle.remove()
    assert not (tmp_path / "teacher-cache").exists()
    assert calls.count("TFSepNet") >= 2 * 3  # teacher and student forward on every one of the 3 training batches


def test_distractors_reach_the_training_and_tuning_mixtures_not_validation_and_need_teachers_that_hear_them(synth_data, teacher_ckpt, tmp_path):
    from earmark.audio.mixing import find_backgrounds
    from earmark.training import make_splits

    import soundfile as sf

    (tmp_path / "others").mkdir()
    for k in range(3):  # short bursts: sounds outside the label set
        sf.write(tmp_path / "others" / f"burst{k}.wav", np.random.default_rng(k).uniform(-0.5, 0.5, 9600).astype(np.float32), 32000)
    noises = find_backgrounds(tmp_path / "others")
    splits = make_splits(read_manifest(synth_data.clips_csv), "detect", 32000, 1.0, 0.05, 4, 5, 16,
                         backgrounds=str(synth_data.backgrounds), distractors=noises)
    assert splits.train.mixer.distractors == noises and not splits.val.dataset.mixer.distractors  # validation hears the classes only
    plain = make_splits(read_manifest(synth_data.clips_csv), "detect", 32000, 1.0, 0.05, 4, 5, 16, backgrounds=str(synth_data.backgrounds))
    assert [s.events for s in splits.soundscapes] == [s.events for s in plain.soundscapes]  # tuning: the same events, distractors added
    assert sum(not np.array_equal(a.audio, b.audio) for a, b in zip(splits.soundscapes, plain.soundscapes)) >= len(plain.soundscapes) // 4
    config = DistillConfig(data=str(synth_data.clips_csv), out=str(tmp_path), teachers=[str(teacher_ckpt)], student="tfsepnet16",
                           objective="detect", backgrounds=str(synth_data.backgrounds), distractors=str(tmp_path / "others"),
                           epochs=1, batch_size=16, progress=False)
    with pytest.raises(ValueError, match="cached teacher outputs never heard; pass --online-teacher"):
        distill(config)
    assert not (tmp_path / "teacher-cache").exists()  # refused before the cache is built


def test_online_teachers_resample_as_the_cache_does_without_wrapping_round():
    """The online teacher's batch resampling equals soxr HQ on each clip (the cache path's resampler) within 1e-6."""
    import soxr

    from earmark.distill.run import resample

    t = np.arange(32000) / 32000
    tone = np.sin(2 * np.pi * 1000 * t)
    click = np.zeros(32000)
    click[-8:] = 1.0  # energy at the very end must not appear at the start (the spectral method wrapped it round)
    alias = np.sin(2 * np.pi * 11000 * t)  # above the new Nyquist (8 kHz): filtered out
    batch = torch.tensor(np.stack([tone, click, alias]), dtype=torch.float32)
    down = resample(batch, 32000, 16000).numpy()
    for clip, out in zip(batch.numpy(), down):
        assert np.abs(out - soxr.resample(clip, 32000, 16000, quality="HQ")).max() < 1e-6
    assert down.shape == (3, 16000)
    assert np.abs(down[0, 200:-200] - np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)[200:-200]).max() < 1e-2
    assert np.abs(down[1, :8000]).max() < 1e-4
    assert np.sqrt(np.mean(down[2, 200:-200] ** 2)) < 1e-3


def test_a_frame_level_student_distils_from_a_frame_teachers_cache(tmp_path):
    from earmark.audio.synth import synthesize
    from earmark.teachers.finetune import FinetuneConfig, finetune

    data = synthesize(tmp_path / "data", seed=4, clips_per_class=1, soundscapes=10)
    teacher = finetune(FinetuneConfig("atst_frame_tiny", str(data.soundscapes_tsv), str(tmp_path / "teacher"), task="frame",
                                      clip_seconds=10.0, epochs=1, batch_size=4, progress=False, val_fold=1, test_fold=2))
    final = distill(DistillConfig(data=str(data.soundscapes_tsv), out=str(tmp_path / "student"), teachers=[str(teacher)],
                                  student="tfsepnet16", task="frame", clip_seconds=10.0, epochs=1, batch_size=4,
                                  val_fold=1, test_fold=2, progress=False))
    assert TeacherCache.open(tmp_path / "student" / "teacher-cache").has("frame_logits")
    results = json.loads((tmp_path / "student" / "results.json").read_text())
    assert "frame_f1" in results["float"] and "chance" not in results  # 1/C says nothing about frame F1
    meta = json.loads((final / "earmark.json").read_text())
    seen = {label for clip in read_manifest(data.soundscapes_tsv).folds([1]).clips for *_, label in clip.events}
    assert meta["task"] == "frame" and meta["objective"] == "detect"
    thresholds = meta["extra"]["thresholds"]  # one shared threshold, tuned on the classes heard, also for those unheard
    assert set(thresholds) == set(meta["labels"]) and len(set(thresholds.values())) == 1
    assert set(results["thresholds"]["unseen"]) == set(meta["labels"]) - seen and seen


def test_frame_kd_pulls_a_frame_student_towards_its_frame_teacher(tmp_path):
    from earmark.audio.features_torch import Frontend
    from earmark.audio.io import load_audio
    from earmark.audio.synth import synthesize
    from earmark.teachers.finetune import FinetuneConfig, finetune
    from earmark.nn import match_time

    data = synthesize(tmp_path / "data", seed=4, clips_per_class=1, soundscapes=8)
    teacher = finetune(FinetuneConfig("atst_frame_tiny", str(data.soundscapes_tsv), str(tmp_path / "teacher"), task="frame",
                                      clip_seconds=10.0, epochs=1, batch_size=4, progress=False, val_fold=1, test_fold=2))
    common = dict(data=str(data.soundscapes_tsv), teachers=[str(teacher)], student="tfsepnet16", task="frame", clip_seconds=10.0,
                  epochs=20, batch_size=2, lr=1e-2, mixup_alpha=0.0, freq_mixstyle_p=0.0, val_fold=1, test_fold=2, progress=False)
    cache = teacher_cache(DistillConfig(**common, out=str(tmp_path / "cache-owner")), read_manifest(data.soundscapes_tsv))
    manifest = read_manifest(data.soundscapes_tsv)
    train, labels = manifest.filter(lambda c: c.fold not in (1, 2)).clips, manifest.labels.to_list()
    gaps = {}
    for name, kd in (("labels", False), ("kd", True)):  # the same seeds; only the loss differs
        final = distill(DistillConfig(**common, out=str(tmp_path / name), kd=kd, hard_weight=0.0, cache=str(tmp_path / "cache-owner" / "teacher-cache")))
        student, _ = load_model(final, "student")
        frontend = Frontend(student.frontend)
        waves = torch.from_numpy(np.stack([load_audio(c.path, frontend.spec.sample_rate)[: 10 * frontend.spec.sample_rate] for c in train]))
        with torch.no_grad():
            ours = torch.sigmoid(student.eval()(frontend(waves).unsqueeze(1)).frame_logits)
        theirs = torch.sigmoid(match_time(torch.from_numpy(cache.lookup([c.id for c in train], "frame_logits")), ours.shape[1]))
        gaps[name] = float(((ours - theirs) ** 2).mean())
    step = 10.0 / ours.shape[1]
    truth = torch.zeros_like(ours)  # the strong labels on the same frames
    for row, clip in enumerate(train):
        for onset, offset, label in clip.events:
            truth[row, int(onset / step):math.ceil(offset / step), labels.index(label)] = 1.0
    teacher_to_labels = float(((theirs - truth) ** 2).mean())
    # KD alone (hard weight 0) reproduces the teacher's frames: 0.018 from the teacher, which is 0.25 from the labels. The
    # labels-only student lands 0.025-0.11 from the teacher depending on float summation order (it predicts little, as
    # this 1-epoch teacher does), so it is a bound, not a ratio.
    assert gaps["kd"] < gaps["labels"] and gaps["kd"] < 0.15 * teacher_to_labels, (gaps, teacher_to_labels)


def test_feature_regression_trains_a_projection_that_stays_out_of_the_checkpoint(synth_data, teacher_ckpt, tmp_path):
    final = distill(DistillConfig(data=str(synth_data.clips_csv), out=str(tmp_path), teachers=[str(teacher_ckpt)], student="tfsepnet16",
                                  epochs=1, batch_size=16, feature_weight=1.0, progress=False))
    assert TeacherCache.open(tmp_path / "teacher-cache").has("embeddings")
    model, _ = load_model(final, "student")  # loads strictly: no projection keys in the student's weights
    assert not any(name.startswith("project") for name in model.state_dict())


def test_a_second_distill_in_the_same_folder_resumes_instead_of_retraining(synth_data, teacher_ckpt, tmp_path, caplog):
    config = DistillConfig(data=str(synth_data.clips_csv), out=str(tmp_path), teachers=[str(teacher_ckpt)], student="tfsepnet16",
                           epochs=2, batch_size=16, progress=False)
    first = distill(config)
    weights = (first / "model.safetensors").read_bytes()
    state = torch.load(tmp_path / "float" / "state.pt", weights_only=True)["train_state"]
    with caplog.at_level("INFO", logger="earmark"):
        distill(config)
    assert f"resumed {tmp_path / 'float'} at step {state['step']}" in caplog.text
    assert (first / "model.safetensors").read_bytes() == weights  # nothing was trained twice
    for other in (dict(kd=False, lr=0.1, seed=7), dict(student="vit_micro_audio")):
        with pytest.raises(ValueError, match="holds another run .*pass --force to start over there, or another --out"):
            distill(replace(config, **other))
    assert (first / "model.safetensors").read_bytes() == weights and json.loads((tmp_path / "config.json").read_text())["kd"]


def test_audio_replaced_under_the_same_name_refuses_the_run_and_its_cache(synth_data, teacher_ckpt, tmp_path):
    data = shutil.copytree(synth_data.root, tmp_path / "data")
    config = DistillConfig(data=str(data / synth_data.clips_csv.name), out=str(tmp_path / "run"), teachers=[str(teacher_ckpt)],
                           student="tfsepnet16", epochs=1, batch_size=16, progress=False)
    distill(config)
    cache = tmp_path / "run" / "teacher-cache"
    old_key = json.loads((cache / "index.json").read_text())["key"]
    clips = read_manifest(config.data).clips
    replaced, other = clips[0], next(c for c in clips if c.labels != clips[0].labels)
    before = TeacherCache.open(cache).lookup([replaced.id])
    shutil.copyfile(other.path, replaced.path)  # another sound under the old name
    stat = os.stat(replaced.path)
    os.utime(replaced.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    with pytest.raises(ValueError, match="holds another run \\(the data changed \\(file sizes and modification times\\)\\); "
                                         "pass --force to start over there, or another --out"):
        distill(config)
    with pytest.raises(ValueError, match="or the audio files changed since .*; delete .*teacher-cache or pass --cache elsewhere"):
        distill(config, force=True)
    with pytest.raises(ValueError, match="or the audio files changed since"):
        distill(replace(config, out=str(tmp_path / "other"), cache=str(cache)))
    shutil.rmtree(cache)
    distill(config)  # --force cleared the old state: the run starts over and rebuilds the cache from the new audio
    assert json.loads((cache / "index.json").read_text())["key"] != old_key
    assert not np.allclose(TeacherCache.open(cache).lookup([replaced.id]), before)


def test_spec_augment_zeroes_one_band_per_item_no_wider_than_asked():
    torch.manual_seed(0)
    x = torch.ones(8, 1, 40, 30)
    out = spec_augment(x, freq_mask=6, time_mask=4)
    for item in out[:, 0]:
        rows, cols = (item == 0).all(1), (item == 0).all(0)
        assert rows.sum() <= 6 and cols.sum() <= 4
    assert torch.equal(x, torch.ones(8, 1, 40, 30))  # the input is left alone


def test_mixture_teacher_takes_per_class_the_most_confident_placed_clip(synth_data, teacher_ckpt, tmp_path):
    manifest = read_manifest(synth_data.clips_csv)
    cache = teacher_cache(DistillConfig(data=str(synth_data.clips_csv), out=str(tmp_path), teachers=[str(teacher_ckpt)]), manifest)
    a, b = manifest.clips[0].id, manifest.clips[9].id
    logits = mixture_teacher(cache, [[a, b], [a], []]).numpy()
    sigmoid = lambda x: 1 / (1 + np.exp(-x.astype(np.float64)))
    expected = np.maximum(sigmoid(cache.lookup([a])[0]), sigmoid(cache.lookup([b])[0]))
    assert np.allclose(sigmoid(logits[0]), np.clip(expected, 1e-4, 1 - 1e-4), atol=1e-5)
    assert np.allclose(sigmoid(logits[2]), 1e-4, atol=1e-7)  # background only: the teacher hears nothing


def _listen(model, wav, *flags):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "earmark.cli", "listen", str(model), "--source", str(wav), "--fast", *flags],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_no_tune_leaves_thresholds_untuned_for_a_run_no_daemon_listens_with(synth_data, tmp_path, caplog, capsys):
    from earmark.cli import main
    from earmark.engine import read_meta

    assert main(["distill", "--data", str(synth_data.clips_csv), "--out", str(tmp_path), "--student", "tfsepnet16", "--no-kd",
                 "--no-tune", "--objective", "detect", "--backgrounds", str(synth_data.backgrounds), "--epochs", "1",
                 "--batch-size", "16", "-q"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert "thresholds" not in results and not (tmp_path / "thresholds.json").exists()
    assert "thresholds" not in read_meta(tmp_path / "student").extra and "no soundscapes" not in caplog.text
    assert f"next: earmark tune {tmp_path} (event thresholds), then earmark export" in capsys.readouterr().out  # advice in order


def test_objective_detect_on_single_label_clips_makes_an_event_detector_with_tuned_thresholds(synth_data, teacher_ckpt, tmp_path):
    from earmark.engine import read_meta
    from earmark.export import export_onnx
    from earmark.runtime import read_thresholds

    final = distill(DistillConfig(data=str(synth_data.clips_csv), out=str(tmp_path), teachers=[str(teacher_ckpt)], student="tfsepnet16",
                                  objective="detect", backgrounds=str(synth_data.backgrounds), epochs=1, batch_size=16,
                                  median=3, min_duration=0.2, qat=True, qat_epochs=1, progress=False))
    meta = read_meta(final)
    results = json.loads((tmp_path / "results.json").read_text())
    assert meta.objective == "detect" and results["objective"] == "detect" and not read_manifest(synth_data.clips_csv).multi_label
    tuned = results["thresholds"]["thresholds"]
    assert final.name == "student-int8"
    assert tuned and meta.extra["thresholds"] == tuned == read_thresholds(tmp_path / "thresholds.json")  # one round trip
    assert meta.extra["postprocess"] == {"median": 3, "min_duration": 0.2, "max_gap": 0.0}
    float_meta = read_meta(tmp_path / "student")  # the float student is tuned too: it exports on its own
    assert float_meta.extra["thresholds"] == results["float_thresholds"]["thresholds"] and float_meta.extra["postprocess"] == meta.extra["postprocess"]
    exported = export_onnx(final, tmp_path / "detector.onnx")
    records = _listen(exported.path, synth_data.root / "audio" / "scape-000.wav", *[f"--threshold={l}=0.01" for l in meta.labels])
    kinds = {r["type"] for r in records}
    assert "event" in kinds and "scene" not in kinds  # sigmoid detectors report events, whatever the clips' labelling
    from earmark.runtime.model import load_backend

    metadata = load_backend(exported.path).metadata
    assert metadata.thresholds == tuned and metadata.postprocess == {"median": 3, "min_duration": 0.2, "max_gap": 0.0}
    import argparse

    from earmark.runtime.cli import configure, event_settings

    parser = argparse.ArgumentParser()
    configure(parser)
    settings = lambda *flags: event_settings(parser.parse_args([str(exported.path), *flags]), metadata)[0]
    assert (settings().median, settings().min_duration) == (3, 0.2)  # listen decides as the thresholds were tuned
    assert (settings("--median", "1").median, settings("--median", "1").min_duration) == (1, 0.2)  # a flag wins over the model
    assert len(set(tuned.values())) == 1 and results["thresholds"]["criterion"] == "one threshold for all classes: event F1"
    assert main(["tune", str(tmp_path)]) == 0  # the run's own settings again: the same validation soundscapes, the same thresholds
    assert json.loads((tmp_path / "results.json").read_text())["thresholds"]["thresholds"] == tuned
    assert main(["tune", str(tmp_path), "--max-false-alarms", "60"]) == 0  # docs/distill.md's two `earmark tune` commands
    budget = json.loads((tmp_path / "results.json").read_text())["thresholds"]
    assert budget["criterion"] == "one threshold for all classes: events found at <= 60 false alarms per hour in total"
    assert len(set(budget["thresholds"].values())) == 1
    assert main(["tune", str(tmp_path), "--per-class-thresholds"]) == 0
    retuned = json.loads((tmp_path / "results.json").read_text())
    criterion = "one threshold per class: event F1"
    assert retuned["thresholds"]["criterion"] == retuned["float_thresholds"]["criterion"] == criterion
    assert read_meta(final).extra["thresholds"] == retuned["thresholds"]["thresholds"] == read_thresholds(tmp_path / "thresholds.json")
    assert read_meta(tmp_path / "student").extra["thresholds"] == retuned["float_thresholds"]["thresholds"]
    assert retuned["int8"] == results["int8"]  # only the thresholds changed


def test_objective_classify_makes_a_scene_classifier(synth_data, teacher_ckpt, tmp_path):
    from earmark.export import export_onnx

    exported = export_onnx(teacher_ckpt, tmp_path / "scenes.onnx")  # distilled without --objective from single-label clips
    records = _listen(exported.path, synth_data.root / "audio" / "scape-000.wav")
    assert {r["type"] for r in records} == {"status", "scene"}


def test_tune_refuses_a_folder_without_a_finished_detector_run(tmp_path, capsys):
    assert main(["tune", str(tmp_path)]) == 1
    assert "holds no finished distill run (config.json and student/); pass the --out of `earmark distill`" in capsys.readouterr().err


def test_the_cpu_default_scope_is_weight_only_for_conv_students_and_pointwise_for_vits():
    from earmark.students import cpu_default_scope, create_student

    assert cpu_default_scope(create_student("tfsepnet16", 8)) == "weights"
    assert cpu_default_scope(create_student("vit_micro_audio", 8)) == "pointwise"
