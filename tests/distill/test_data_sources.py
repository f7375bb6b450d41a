"""Distillation on WebDataset shards (under torchrun) and from a teacher-output cache written in many parts."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from earmark.audio.manifest import read_manifest
from earmark.cli import main
from earmark.distill import DistillConfig, distill
from earmark.distill.run import load_teacher
from earmark.teachers.cache import TeacherCache
from earmark.teachers.predict import predict_to_cache


def test_distill_does_not_care_how_many_parts_the_cache_has(synth_data, teacher_ckpt, tmp_path):
    manifest = read_manifest(synth_data.clips_csv)
    predictor, _ = load_teacher(str(teacher_ckpt))
    caches = {parts: predict_to_cache([predictor], manifest, tmp_path / f"cache{parts}", 1.0, batch_size=8,
                                      part_clips=len(manifest) // parts) for parts in (1, 10)}  # the same batches either way
    assert len(TeacherCache.open(caches[10]).parts) == 10
    ids = manifest.ids[::-1]
    assert (TeacherCache.open(caches[1]).lookup(ids) == TeacherCache.open(caches[10]).lookup(ids)).all()
    students = [distill(DistillConfig(data=str(synth_data.clips_csv), out=str(tmp_path / f"run{parts}"), teachers=[str(cache)],
                                      student="tfsepnet16", epochs=1, batch_size=16, progress=False))
                for parts, cache in caches.items()]
    one, ten = (load_file(str(s / "model.safetensors")) for s in students)
    assert all(torch.equal(one[k], ten[k]) for k in one)  # the same KD targets row for row


@pytest.mark.slow
def test_distill_on_shards_under_torchrun_on_two_cpu_ranks(synth_data, teacher_ckpt, tmp_path):
    assert main(["data", "shard", str(synth_data.clips_csv), str(tmp_path / "shards"), "--clips-per-shard", "6"]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29545", "-m", "earmark.cli",
           "distill", "--teacher", str(teacher_ckpt), "--student", "tfsepnet16", "--data", str(tmp_path / "shards"),
           "--out", str(tmp_path / "run"), "--epochs", "2", "--batch-size", "8", "--workers", "1"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    train = read_manifest(synth_data.clips_csv).train_val_test(4, 5)[0]
    state = torch.load(tmp_path / "run" / "float" / "state.pt", weights_only=True)
    steps_per_epoch = -(-(-(-len(train) // 2)) // 8)  # each rank: half the training clips in batches of at most 8
    assert state["train_state"] == {"step": 2 * steps_per_epoch, "epoch": 2, "batch": 0, "best": state["train_state"]["best"]}
    cache = TeacherCache.open(tmp_path / "run" / "teacher-cache")  # both ranks scored their parts of the shards
    assert sorted(cache.rows) == sorted(read_manifest(synth_data.clips_csv).ids)
    assert "accuracy" in json.loads((tmp_path / "run" / "results.json").read_text())["float"]
