"""Every verb answers a user's mistake (a missing file, a wrong kind of file, a renamed column, zero or negative numbers)
with one line on stderr and a non-zero exit, before any work starts; never a traceback."""

import numpy as np
import pytest
import soundfile as sf

from earmark.cli import main

from .runtime.models import export_detector
from .test_cli import earmark


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("mistakes")
    (root / "audio").mkdir()
    sf.write(root / "audio" / "a.wav", np.full(16000, 0.1, np.float32), 16000)
    (root / "renamed.csv").write_text("file,fold,target,category\na.wav,1,0,dog\n")
    (root / "list.json").write_text("[1, 2]")
    (root / "empty").mkdir()
    (root / "ok.csv").write_text("filename,fold,target,category\na.wav,1,0,dog\n")
    (root / "renamed.tsv").write_text("file\tonset\toffset\tevent_label\na.wav\t0.1\t0.5\tdog\n")
    return {"root": root, "wav": root / "audio" / "a.wav", "model": export_detector(root / "tones.onnx", frame=True, hop=0.1),
            "renamed": root / "renamed.csv", "clips": root / "ok.csv", "renamed_strong": root / "renamed.tsv", "missing": root / "missing"}


CASES = [
    (["finetune", "acmsskd_tiny", "--data", "{renamed}", "--out", "{root}/o", "--batch-size", "0"], "--batch-size 0 is not a whole number"),
    (["finetune", "acmsskd_tiny", "--data", "{renamed}", "--out", "{root}/o", "--lr", "-1"], "--lr -1.0 is not a positive number"),
    (["distill", "--data", "{renamed}", "--out", "{root}/o", "--epochs", "-1"], "--epochs -1 is not a whole number"),
    (["distill", "--data", "{renamed}", "--out", "{root}/o", "--dir-p", "2"], "--dir-p 2.0 is not a probability"),
    (["distill", "--no-kd", "--data", "{clips}", "--out", "{root}/o", "--source-chain", "eq"], "pass --backgrounds to train on mixtures"),
    (["distill", "--no-kd", "--data", "{clips}", "--out", "{root}/o", "--source-chain", "phone"], "invalid choice: 'phone' (choose from"),
    (["distill", "--no-kd", "--data", "{clips}", "--out", "{root}/o", "--distractors", "{root}/audio"], "pass --backgrounds to train on mixtures"),
    (["pretrain", "asit", "--data", "{renamed}", "--out", "{root}/o", "--steps", "0"], "--steps 0 is not a whole number"),
    (["pretrain", "asit", "--data", "{renamed}", "--out", "{root}/o", "--seed", "-1"], "--seed -1 is not a whole number of at least 0"),
    (["finetune", "acmsskd_tiny", "--data", "{renamed}", "--out", "{root}/o", "--mix-snr", "nan", "10"], "--mix-snr nan is not a finite"),
    (["data", "synth", "{root}/o", "--seed", "-1"], "--seed: '-1' is not a whole number of at least 0"),
    (["bench", "{model}", "--runs", "0"], "--runs: '0' is not a whole number of at least 1"),
    (["bench", "{model}", "--runs", "-5"], "--runs: '-5' is not a whole number of at least 1"),
    (["bench", "{model}", "--batch", "0"], "--batch: '0' is not a whole number of at least 1"),
    (["data", "synth", "{root}/o", "--clips-per-class", "0"], "--clips-per-class: '0' is not a whole number"),
    (["data", "shard", "{renamed}", "{root}/o", "--clips-per-shard", "0"], "--clips-per-shard: '0' is not"),
    (["data", "mix", "{renamed}", "{root}/audio", "{root}/o", "--count", "0"], "--count: '0' is not"),
    (["data", "mix", "{renamed}", "{root}/audio", "{root}/o", "--duration", "-1"], "--duration: '-1' is not a positive number"),
    (["predict", "{model}", "--data", "{renamed}", "--out", "{root}/o", "--batch-size", "0"], "--batch-size: '0' is not"),
    (["eval", "{model}", "{renamed}", "--collar", "-1"], "--collar: '-1' is not"),
    (["complexity", "tfsepnet16", "--classes", "0"], "--classes: '0' is not"),
    (["listen", "{model}", "--source", "-", "--hop", "100"], "--hop 100 s is longer than the model's"),
    (["listen", "{model}", "--source", "-", "--sink", "bogus"], "--sink 'bogus' is neither stdout nor file:PATH"),
    (["convert", "--from", "beats", "{wav}", "{root}/o"], "a.wav: is corrupt or truncated"),
    (["data", "check", "{renamed}"], "has no 'filename' column"),
    (["data", "check", "{renamed_strong}"], "has no 'filename' column"),
    (["eval", "{model}", "{renamed}"], "has no 'filename' column"),
    (["finetune", "acmsskd_tiny", "--data", "{renamed}", "--out", "{root}/o"], "has no 'filename' column"),
    (["data", "check", "{missing}.csv"], "no such manifest"),
    (["data", "shard", "{clips}", "{wav}"], "a.wav: is a file, and the shards go into a folder"),
    (["pretrain", "asit", "--data", "{root}/empty", "--out", "{root}/o", "--teacher", "asit_tiny"], "empty: holds no clips"),
    (["predict", "{model}", "--data", "{root}/empty", "--out", "{root}/o"], "empty: holds no clips"),
    (["finetune", "--config", "{wav}"], "a.wav: is not a run's config.json"),
    (["distill", "--config", "{renamed}"], "renamed.csv: is not a run's config.json"),
    (["finetune", "--config", "{root}/list.json"], "list.json: holds a JSON list, not a run's settings"),
    (["bench", "{missing}.onnx"], "missing.onnx"),
    (["listen", "{missing}.onnx", "--source", "-"], "missing.onnx"),
    (["export", "{missing}"], "missing"),
    (["bench", "{wav}"], "a.wav"),
    (["listen", "{wav}", "--source", "-"], "a.wav"),
]


@pytest.mark.parametrize("argv, says", CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CASES])
def test_a_mistake_is_one_line_and_a_non_zero_exit(files, capsys, argv, says):
    try:
        code = main([part.format(**files) for part in argv])
    except SystemExit as stop:  # argparse refuses an option's value
        code = stop.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code not in (0, None) and len(lines) == 1 and says in lines[0] and "Traceback" not in err, err


def test_a_timeline_without_matplotlib_is_refused_before_the_recording_is_decoded(files):
    run = earmark("listen", str(files["model"]), "--source", str(files["wav"]), "--fast", "--timeline", str(files["root"] / "t.png"),
                  block=("matplotlib",))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip() == "earmark listen: this needs matplotlib, which the edge install leaves out; install it with: pip install 'earmark[eval]'"
