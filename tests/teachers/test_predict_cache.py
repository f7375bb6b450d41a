"""The teacher-output cache at scale: parts written by every torchrun rank, resumable after a kill, keyed by file stamps, locked."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from earmark.audio.manifest import read_manifest
from earmark.audio.sources import open_data
from earmark.audio.synth import synthesize
from earmark.cli import main
from earmark.engine.checkpoint import checkpoint_hash, load_model, save_checkpoint
from earmark.teachers.cache import TeacherCache, cache_lock
from earmark.teachers.checkpoint import teacher_checkpoint_meta
from earmark.teachers.heads import TeacherClassifier
from earmark.teachers.predict import Predictor, ensemble_key, predict_to_cache
from earmark.teachers.registry import create_teacher


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    paths = synthesize(root / "data", seed=2, clips_per_class=3, soundscapes=1)
    assert main(["data", "shard", str(paths.clips_csv), str(root / "shards"), "--clips-per-shard", "4"]) == 0
    return paths, root / "shards"


@pytest.fixture(scope="module")
def teacher(data, tmp_path_factory):
    """A frame-level tiny teacher with a head (random weights: the cache's bookkeeping is under test, not its quality)."""
    labels = read_manifest(data[0].clips_csv).labels.to_list()
    torch.manual_seed(0)
    backbone = create_teacher("atst_frame_tiny")
    model = TeacherClassifier(backbone, len(labels), "linear", "frame")
    meta = teacher_checkpoint_meta(backbone.frontend, "atst_frame_tiny", {}, labels, "frame", "linear")
    return save_checkpoint(tmp_path_factory.mktemp("teacher") / "teacher", model.state_dict(), meta)


def _predictor(path) -> Predictor:
    model, _ = load_model(path, "teacher")
    return Predictor(model, model.frontend, checkpoint_hash(path))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != ".lock"}


def _predict_cmd(teacher, data, out, *extra) -> list[str]:
    return ["-m", "earmark.cli", "predict", str(teacher), "--data", str(data), "--out", str(out), "--workers", "1", *extra]


@pytest.mark.slow
def test_two_ranks_write_the_same_cache_as_one(data, teacher, tmp_path):
    _, shards = data
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    extra = ("--part-clips", "5", "--batch-size", "2")
    one = subprocess.run([sys.executable, *_predict_cmd(teacher, shards, tmp_path / "one", *extra)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541",
                          *_predict_cmd(teacher, shards, tmp_path / "two", *extra)], capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert a == b  # bit for bit: the same parts, rows and float16 values, whatever the number of ranks
    cache = TeacherCache.open(tmp_path / "two")
    assert len(cache.parts) == 5 and cache.has("frame_logits") and cache.parts[0]["frame_logits"].dtype == np.float16
    ids = open_data(shards).ids
    assert cache.lookup(ids).shape == (24, 8) and cache.lookup(ids[::-1], "frame_logits").shape[:2] == (24, cache.row_shape("frame_logits")[0])


@pytest.mark.slow
def test_a_killed_predict_continues_and_ends_with_the_same_cache(data, teacher, tmp_path):
    clips, _ = data
    out = tmp_path / "killed"
    extra = ("--part-clips", "3", "--batch-size", "1", "--clip-seconds", "6")
    job = subprocess.Popen([sys.executable, *_predict_cmd(teacher, clips.clips_csv, out, *extra)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    while not (out / "part-000000.json").is_file() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    job.send_signal(signal.SIGKILL)
    job.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")}
    assert "part-000000.json" in finished and not (out / "index.json").exists()  # killed between parts, no index yet
    rerun = subprocess.run([sys.executable, *_predict_cmd(teacher, clips.clips_csv, out, *extra)], capture_output=True, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert all((out / name).stat().st_mtime_ns == stamp for name, stamp in finished.items())  # finished parts were skipped
    manifest = read_manifest(clips.clips_csv)
    whole = predict_to_cache([_predictor(teacher)], manifest, tmp_path / "whole", 6.0, batch_size=1, part_clips=3)
    assert _files(out) == _files(whole)


def test_replaced_audio_or_a_held_lock_is_refused(data, teacher, tmp_path):
    clips, _ = data
    manifest = read_manifest(clips.clips_csv)
    predictor = _predictor(teacher)
    path = predict_to_cache([predictor], manifest, tmp_path / "cache", 1.0, part_clips=10)
    key = ensemble_key([predictor], manifest, 1.0)
    TeacherCache.open(path, expect_key=key)
    with cache_lock(path, exclusive=True), pytest.raises(RuntimeError, match="another earmark predict"):
        predict_to_cache([predictor], manifest, path, 1.0, part_clips=10)
    audio = manifest.clips[0].path
    stat = audio.stat()
    os.utime(audio, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the same name, a newer file
    try:
        with pytest.raises(ValueError, match="audio files changed"):
            TeacherCache.open(path, expect_key=ensemble_key([predictor], manifest, 1.0))
    finally:
        os.utime(audio, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_cache_with_embeddings_serves_a_run_without_them_and_one_without_is_refused_for_the_right_reason(data, teacher, tmp_path):
    from earmark.distill.run import DistillConfig, teacher_cache

    clips, _ = data
    manifest = read_manifest(clips.clips_csv)
    predictor = _predictor(teacher)
    with_embeddings = predict_to_cache([predictor], manifest, tmp_path / "a", 1.0, embeddings=True)
    assert TeacherCache.open(with_embeddings, expect_key=ensemble_key([predictor], manifest, 1.0)).has("embeddings")
    kept = _files(with_embeddings)
    predict_to_cache([predictor], manifest, with_embeddings, 1.0)  # nothing to write: the cache already serves this
    assert _files(with_embeddings) == kept
    without = predict_to_cache([predictor], manifest, tmp_path / "b", 1.0)
    config = DistillConfig(data=str(clips.clips_csv), out=str(tmp_path / "run"), teachers=[str(teacher)], cache=str(without),
                           feature_weight=1.0)
    with pytest.raises(ValueError, match="holds no embeddings, which --feature-weight needs"):
        teacher_cache(config, manifest)
    assert teacher_cache(dataclasses.replace(config, cache=str(with_embeddings)), manifest).has("embeddings")
    predict_to_cache([predictor], manifest, without, 1.0, embeddings=True)  # asked for them: the cache is rewritten with them
    assert TeacherCache.open(without).has("embeddings")
