"""A student with two heads: events (sigmoid, frame-level) and the background's scene (softmax), from one training run."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from earmark.audio.manifest import read_manifest
from earmark.audio.mixing import MixSettings, SoundscapeMixer, background_scenes, split_backgrounds
from earmark.audio.mixture_dataset import MixtureDataset
from earmark.distill import DistillConfig, distill


def _scene_of_file(path: str) -> str:
    return Path(path).name.split("-")[0]  # the demo data names a background after its scene: rain-002.wav


def test_mixtures_carry_the_scene_of_their_background(synth_data):
    labels, scene_of = background_scenes(synth_data.backgrounds_tsv)
    assert labels == sorted({_scene_of_file(p) for p in scene_of}) and len(labels) == 4
    mixer = SoundscapeMixer(read_manifest(synth_data.clips_csv), [Path(p) for p in scene_of], 32000, MixSettings(duration=1.0))
    dataset = MixtureDataset(mixer, None, False, 0, scene_of, labels)
    seen = set()
    for index in range(12):
        background = mixer.mix(np.random.default_rng((0, 0, index)), first=index).background  # the draw the item makes
        target = dataset[index]["scene_target"]
        assert target.sum() == 1 and labels[int(target.argmax())] == _scene_of_file(background)
        seen.add(_scene_of_file(background))
    assert len(seen) > 1


def test_backgrounds_split_per_scene_so_every_fold_hears_every_scene():
    files = [Path(f"{scene}-{k}.wav") for scene in ("park", "street") for k in range(10)] + [Path("metro-0.wav")]
    scenes = {str(f): _scene_of_file(str(f)) for f in files}
    folds = [1, 2, 3, 4, 5]
    own = split_backgrounds(files, folds, scenes)
    for fold in folds:
        assert {scenes[str(f)] for f in own[fold]} == {"park", "street", "metro"}
    park = [{f for f in own[fold] if scenes[str(f)] == "park"} for fold in folds]
    assert all(len(p) < 10 for p in park) and set().union(*park) == {f for f in files if scenes[str(f)] == "park"}


def test_scenes_need_labelled_backgrounds(synth_data, tmp_path):
    base = dict(data=str(synth_data.clips_csv), out=str(tmp_path), student="tfsepnet16", task="frame", objective="detect",
                kd=False, scenes=True, progress=False)
    with pytest.raises(ValueError, match="--scenes learns the scene of each background recording; pass --backgrounds"):
        distill(DistillConfig(**base))
    with pytest.raises(ValueError, match="needs one scene label per background recording"):
        distill(DistillConfig(**base, backgrounds=str(synth_data.backgrounds)), force=True)  # a flat folder names no scenes


DOCS = (Path(__file__).resolve().parents[2] / "docs" / "distill.md").read_text()
COMMANDS = re.search(r"## Scenes and events from one student.*?```bash\n(.*?)```", DOCS, re.S).group(1).replace("\\\n", " ").splitlines()
BUDGET = ["--student", "tfsepnet16", "--epochs", "1", "--batch-size", "16", "--workers", "0", "-q"]  # argparse keeps the last


def _earmark(command: str, cwd: Path, *extra: str) -> str:
    run = subprocess.run([sys.executable, "-m", "earmark.cli", *shlex.split(command)[1:], *extra], cwd=cwd, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, f"{command}\n{run.stderr[-2000:]}"
    return run.stdout


def test_the_documented_two_head_student_reports_scenes_beside_events(synth_data, tmp_path):
    from earmark.engine import read_meta
    from earmark.runtime.model import load_backend

    (tmp_path / "data").symlink_to(synth_data.root)
    distill_cmd, export_cmd, listen_cmd, eval_cmd = COMMANDS
    assert "--scenes" in distill_cmd and listen_cmd.endswith("--source mic")  # the microphone: tests/runtime's software mic
    _earmark(distill_cmd, tmp_path, *BUDGET)
    scenes = background_scenes(synth_data.backgrounds_tsv)[0]
    meta = read_meta(tmp_path / "runs" / "both" / "student")
    assert meta.scene_labels == scenes and meta.model_args["scene_classes"] == len(scenes) and meta.objective == "detect"
    results = json.loads((tmp_path / "runs" / "both" / "results.json").read_text())
    assert {"frame_mAP", "scene_accuracy", "scene_macro_accuracy"} <= set(results["float"])

    assert "next: earmark listen" in _earmark(export_cmd, tmp_path)
    model = tmp_path / "both.onnx"
    assert [o.name for o in onnx.load(str(model)).graph.output] == ["frame_probs", "clip_probs", "scene_probs"]
    backend = load_backend(model)
    metadata = backend.metadata
    assert metadata.scene_labels == tuple(scenes) and metadata.outputs["scene"] == "scene_probs"
    out = backend.run(np.zeros((1, 1, metadata.frontend.n_mels, metadata.input_frames), np.float32))
    assert out["scene"].shape == (1, len(scenes)) and np.isclose(out["scene"].sum(), 1, atol=1e-5)  # a softmax over scenes

    listened = _earmark(listen_cmd.replace("--source mic", "--source data/audio/scape-000.wav --fast"), tmp_path,
                        *[f"--threshold={label}=0.01" for label in meta.labels])
    records = [json.loads(line) for line in listened.splitlines()]
    kinds = {r["type"] for r in records}
    assert {"event", "scene"} <= kinds  # one model, both reports
    assert all(r["label"] in scenes for r in records if r["type"] == "scene")
    assert all(r["label"] in meta.labels for r in records if r["type"] == "event")
    assert records[-1]["type"] == "status" and records[-1]["scene"]["label"] in scenes

    printed = _earmark(eval_cmd, tmp_path)
    assert re.search(r"\d+ clips \(the scene head\): mAP", printed)  # a scene manifest is scored by the scene head
    scored = json.loads((tmp_path / "both-eval" / "results.json").read_text())
    assert scored["head"] == "scene" and scored["clips"] == len(read_manifest(synth_data.scenes_tsv).clips)
    assert (tmp_path / "both-eval" / "confusion.png").is_file()
