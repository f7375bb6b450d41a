"""Every damaged or inconsistent file is refused in one sentence that names it: checkpoints, caches, ONNX models."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from earmark.cli import main
from earmark.engine import save_checkpoint
from earmark.students import create_student, student_checkpoint_meta
from earmark.teachers.cache import CacheWriter


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A three-class student checkpoint and a two-clips-per-class folder dataset."""
    root = tmp_path_factory.mktemp("damaged")
    model = create_student("tfsepnet16", 3)
    save_checkpoint(root / "student", model.state_dict(), student_checkpoint_meta(model, "tfsepnet16", ["a", "b", "c"]))
    for label in "abc":
        for i in range(2):
            (root / "data" / label).mkdir(parents=True, exist_ok=True)
            sf.write(root / "data" / label / f"{i}.wav", np.zeros(8000, np.float32), 16000)
    return root


def _copy(student: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(student / "student", tmp_path / "student"))


def _refused(capsys, argv: list[str], names: str) -> str:
    """Run the CLI; it must exit 1 with one line on stderr that names ``names``."""
    assert main(argv) == 1
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(lines) == 1 and names in lines[0], lines
    return lines[0]


def _edit_meta(path: Path, **changes) -> None:
    meta = json.loads((path / "earmark.json").read_text())
    meta.update(changes)
    (path / "earmark.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("change, says", [
    (dict(labels=["a", "b", "c", "d", "e"]), "names 5 labels but the model has 3 outputs"),
    (dict(colour="red"), "unknown field(s) ['colour']"),
    (dict(labels="a,b,c"), "field 'labels' must be a list"),
    (dict(task="scene"), "task 'scene' is neither"),
    (dict(objective="segment"), "objective 'segment'"),
    (dict(model_args={"num_classes": 3, "task": "clip", "widht": 2}), "takes no argument(s) ['widht']"),
    (dict(frontend={"name": "x", "kind": "wavelet"}), "the frontend lacks field(s)"),
])
def test_inconsistent_metadata_is_refused_naming_earmark_json(student, tmp_path, capsys, change, says):
    path = _copy(student, tmp_path)
    _edit_meta(path, **change)
    line = _refused(capsys, ["export", str(path), "--out", str(tmp_path / "m.onnx")], str(path / "earmark.json"))
    assert says in line


def test_a_bad_frontend_kind_is_named(student, tmp_path, capsys):
    path = _copy(student, tmp_path)
    frontend = json.loads((path / "earmark.json").read_text())["frontend"]
    _edit_meta(path, frontend={**frontend, "kind": "wavelet"})
    assert "kind 'wavelet' is not one of" in _refused(capsys, ["export", str(path)], str(path / "earmark.json"))


def test_a_truncated_weights_file_is_named_by_every_verb(student, tmp_path, capsys):
    path = _copy(student, tmp_path)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    data = str(student / "data")
    for argv in (["export", str(path)], ["bench", str(path), "--runs", "1"],
                 ["predict", str(path), "--data", data, "--out", str(tmp_path / "cache")],
                 ["distill", "--teacher", str(path), "--data", data, "--out", str(tmp_path / "run"), "--val-fold", "1", "--test-fold", "2"]):
        assert "is damaged or truncated" in _refused(capsys, argv, str(weights))


@pytest.mark.parametrize("damage, names", [
    (lambda c: (c / "index.json").write_text('{"key": "k",\n'), "index.json"),
    (lambda c: (c / "part-000000.json").write_text('{"ids": ['), "part-000000.json"),
    (lambda c: (c / "part-000000.clip_logits.npy").write_bytes((c / "part-000000.clip_logits.npy").read_bytes()[:150]),
     "part-000000.clip_logits.npy"),
])
def test_a_damaged_cache_is_named(student, tmp_path, capsys, damage, names):
    ids = ["a/0.wav", "a/1.wav", "b/0.wav", "b/1.wav", "c/0.wav", "c/1.wav"]
    writer = CacheWriter(tmp_path / "cache", "k", part_clips=len(ids))
    (tmp_path / "cache").mkdir()
    writer.start()
    writer.write_part(0, ids, {"clip_logits": np.zeros((6, 3))})
    cache = writer.finish(1, ["a", "b", "c"], {})
    damage(cache)
    argv = ["distill", "--teacher", str(cache), "--data", str(student / "data"), "--out", str(tmp_path / "run"),
            "--val-fold", "1", "--test-fold", "2"]
    _refused(capsys, argv, str(cache / names))


def test_a_corrupt_onnx_file_is_named_by_bench_and_the_tensorrt_check(tmp_path, capsys):
    corrupt, empty = tmp_path / "corrupt.onnx", tmp_path / "empty.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 100)
    empty.write_bytes(b"")
    _refused(capsys, ["bench", str(corrupt), "--runs", "1"], str(corrupt))
    assert "holds no ONNX graph (0 bytes)" in _refused(capsys, ["export", str(empty), "--check", "tensorrt"], str(empty))


def test_export_refuses_a_model_whose_outputs_are_not_finite(tmp_path, capsys):
    import torch

    model = create_student("tfsepnet16", 3)
    state = model.state_dict()
    state["classifier.weight"] = torch.full_like(state["classifier.weight"], float("nan"))  # what a NaN loss leaves
    path = save_checkpoint(tmp_path / "student", state, student_checkpoint_meta(model, "tfsepnet16", ["a", "b", "c"]))
    assert main(["export", str(path), "--out", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    finite = [l for l in err.splitlines() if "finite outputs" in l]
    assert finite and "FAIL" in finite[0] and "outputs are NaN or infinite" in err and "Report this" not in err
    assert not (tmp_path / "m.onnx").exists()


class _Call:
    """A pickle payload: unpickling it would call os.system (torch refuses its global before anything runs)."""

    def __reduce__(self):
        import os

        return (os.system, ("echo unpickled > pwned.txt",))


@pytest.mark.parametrize("reader", ["teacher convert", "student convert", "training resume"])
def test_a_pickled_call_is_named_as_code_by_every_loader(tmp_path, reader, capsys, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    path = tmp_path / ("float/state.pt" if reader == "training resume" else "evil.pt")
    path.parent.mkdir(exist_ok=True)
    torch.save({"model": {"w": torch.zeros(2)}, "payload": _Call()}, path)
    if reader == "training resume":
        from torch import nn

        from earmark.engine import Trainer, TrainConfig

        trainer = Trainer(TrainConfig(run_dir=str(path.parent), progress=False), nn.Linear(2, 1), lambda *a: None, [])
        with pytest.raises(ValueError) as err:
            trainer.load_state()
        message = str(err.value)
    else:
        fmt = "beats" if reader == "teacher convert" else "tfsepnet"
        assert main(["convert", "--from", fmt, str(path), str(tmp_path / "out")]) == 1
        message = capsys.readouterr().err
    assert "holds a pickled call to posix.system; earmark never unpickles code" in message and "corrupt" not in message
    assert not (tmp_path / "pwned.txt").exists()
