"""The edge install for real: a wheel built from the checkout, installed in a fresh venv with only its base dependencies (no torch).

Slow (about a minute of pip on two cores); tests/test_cli.py checks the same hints quickly by blocking imports.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from .runtime.models import SAMPLE_RATE, export_detector, tone_track

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
CLEAN = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
# pyproject's dependencies and what they need in turn, installed with --no-deps so nothing else slips in
EDGE = ["numpy", "soundfile", "soxr", "onnxruntime", "onnx", "sounddevice", "threadpoolctl", "tqdm", "prometheus-client", "psutil", "cffi", "pycparser", "typing-extensions", "flatbuffers", "protobuf", "packaging", "ml-dtypes"]


@pytest.fixture(scope="module")
def edge(tmp_path_factory) -> Path:
    venv, dist = tmp_path_factory.mktemp("edge") / "venv", tmp_path_factory.mktemp("dist")
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
                           capture_output=True, text=True, timeout=900)  # as the README says to build it
    assert wheel.returncode == 0, wheel.stderr[-3000:]
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
                          *EDGE, str(next(dist.glob("earmark-*.whl")))], capture_output=True, text=True, timeout=900,
                         env=CLEAN)  # with this checkout on PYTHONPATH, pip would take earmark as installed already
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv / "bin"


def run(edge: Path, *args: str) -> subprocess.CompletedProcess:
    """The installed console script, reading nothing from this checkout."""
    return subprocess.run([str(edge / "earmark"), *args], capture_output=True, text=True, timeout=300, cwd=edge.parent, env=CLEAN)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return export_detector(tmp_path_factory.mktemp("model") / "tones.onnx")


def test_the_edge_install_has_no_torch_and_says_so(edge):
    version = run(edge, "--version")
    assert version.returncode == 0 and "no torch" in version.stdout and "onnxruntime" in version.stdout
    probe = subprocess.run([str(edge / "python"), "-c", "import earmark.runtime, earmark.export.tensorrt; import torch"],
                           capture_output=True, text=True, env=CLEAN, cwd=edge.parent)
    assert "No module named 'torch'" in probe.stderr and "earmark" not in probe.stderr.splitlines()[-1]


def test_the_edge_install_fits_in_200_mib_without_scipy(edge):
    venv = edge.parent  # made --without-pip: every file in it but the interpreter's links is what pip installed
    size = sum(path.stat().st_size for path in venv.rglob("*") if path.is_file() and not path.is_symlink())
    assert size <= 200 * 2**20, f"the edge install takes {size / 2**20:.0f} MiB"
    probe = subprocess.run([str(edge / "python"), "-c", "import earmark.runtime, earmark.adapt.head; import scipy"],
                           capture_output=True, text=True, env=CLEAN, cwd=venv)
    assert "No module named 'scipy'" in probe.stderr, probe.stderr
    assert run(edge, "listen", "--help").returncode == 0


def test_listen_bench_and_check_work_on_the_edge(edge, model, tmp_path):
    wav = tmp_path / "tone.wav"
    sf.write(wav, tone_track(4.0, [(1.0, 2.5, 1000.0)]), SAMPLE_RATE)
    listen = run(edge, "listen", str(model), "--source", str(wav), "--fast")
    assert listen.returncode == 0, listen.stderr
    events = [json.loads(line) for line in listen.stdout.splitlines() if '"event"' in line]
    assert [e["label"] for e in events] == ["tone_1k"] and abs(events[0]["onset"] - 1.0) < 0.5
    bench = run(edge, "bench", str(model), "--runs", "3", "--json", str(tmp_path / "bench.json"))
    assert bench.returncode == 0, bench.stderr
    assert {row["backend"] for row in json.loads((tmp_path / "bench.json").read_text())["rows"]} == {"onnxruntime"}
    check = run(edge, "export", "--check", "tensorrt", str(model))
    assert check.returncode == 0 and "nothing TensorRT would refuse" in check.stdout, check.stderr


@pytest.mark.parametrize("command, extra", [
    (["distill", "--data", "d.csv", "--out", "o"], "train"),
    (["complexity", "tfsepnet16"], "train"),
    (["demo", "--out", "o"], "train"),
    (["export", "ckpt", "--format", "onnx"], "train"),
])
def test_a_verb_that_needs_an_extra_says_which_in_one_sentence(edge, command, extra):
    out = run(edge, *command)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and f"pip install 'earmark[{extra}]'" in out.stderr


def test_listen_mqtt_on_the_edge_names_the_mqtt_extra(edge, model, tmp_path):
    wav = tmp_path / "silence.wav"
    sf.write(wav, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    out = run(edge, "listen", str(model), "--source", str(wav), "--fast", "--mqtt", "localhost:1")
    assert out.returncode == 1 and "pip install 'earmark[mqtt]'" in out.stderr and "Traceback" not in out.stderr


def test_eval_on_the_edge_names_the_eval_extra_first(edge, model, tmp_path):
    sf.write(tmp_path / "a.wav", tone_track(1.0, [(0.2, 0.8, 1000.0)]), SAMPLE_RATE)
    (tmp_path / "clips.csv").write_text("filename,fold,target,category\na.wav,1,0,tone_1k\n")
    out = run(edge, "eval", str(model), str(tmp_path / "clips.csv"), "--out", str(tmp_path / "ev"))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and "pip install 'earmark[eval]'" in out.stderr  # matplotlib's extra too, not train's
