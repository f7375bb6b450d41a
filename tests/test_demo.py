"""`earmark demo --fast`: the same pipeline as `make demo`, end to end, with a tiny budget."""

import json
import subprocess
import sys


def test_demo_runs_end_to_end_and_prints_the_table(tmp_path):
    run = subprocess.run([sys.executable, "-m", "earmark.cli", "demo", "--fast", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["params"] == 52_088 and summary["int8_param_bytes"] <= 128_000
    assert 0 <= summary["student_int8_accuracy"] <= 1 and summary["rtf"] > 0
    for picture in (summary["timeline"], "distill/confusion.png", "distill/float/curves.png"):
        assert (tmp_path / picture).stat().st_size > 10_000
    assert "event F1" in run.stdout and "earmark listen" in run.stdout
