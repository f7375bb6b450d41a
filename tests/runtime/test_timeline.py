"""`earmark listen FILE --timeline PNG --selections TABLE`: the events it prints, as a Raven table, a CSV and a picture."""

import csv
import json
import os
import subprocess
import sys

import soundfile as sf

from .models import SAMPLE_RATE, export_detector, tone_track

TONES = [(1.0, 2.0, 1000.0), (3.5, 4.3, 3000.0), (5.0, 6.5, 1000.0)]


def _listen(*args):
    return subprocess.run([sys.executable, "-m", "earmark.cli", "listen", *map(str, args)], capture_output=True, text=True, timeout=120)


def test_listen_writes_a_timeline_and_selection_tables_of_the_events_it_prints(tmp_path):
    model = export_detector(tmp_path / "tones.onnx", frame=True, hop=0.1)
    sf.write(tmp_path / "tones.wav", tone_track(8.0, TONES), SAMPLE_RATE)
    raven, table = tmp_path / "out" / "events.txt", tmp_path / "events.csv"
    run = _listen(model, "--source", tmp_path / "tones.wav", "--fast", "--median", "3", "--timeline", tmp_path / "t.png",
                  "--selections", raven)
    assert run.returncode == 0, run.stderr
    printed = [r for r in map(json.loads, run.stdout.splitlines()) if r["type"] == "event"]
    assert [r["label"] for r in printed] == ["tone_1k", "tone_3k", "tone_1k"]
    rows = list(csv.DictReader(open(raven), delimiter="\t"))
    assert [(float(r["Begin Time (s)"]), float(r["End Time (s)"]), r["Annotation"]) for r in rows] == \
        [(r["onset"], r["offset"], r["label"]) for r in printed]
    assert [r["Selection"] for r in rows] == ["1", "2", "3"] and {r["High Freq (Hz)"] for r in rows} == {str(SAMPLE_RATE // 2)}
    png = (tmp_path / "t.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 20_000
    run = _listen(model, "--source", tmp_path / "tones.wav", "--fast", "--median", "3", "--selections", table)
    assert run.returncode == 0, run.stderr
    assert [(float(r["onset"]), r["label"]) for r in csv.DictReader(open(table))] == [(r["onset"], r["label"]) for r in printed]


def test_a_timeline_of_the_microphone_is_refused_with_what_to_do(tmp_path):
    model = export_detector(tmp_path / "tones.onnx", frame=True)
    run = _listen(model, "--source", "mic", "--timeline", tmp_path / "t.png")
    assert run.returncode == 1 and "pass --source FILE" in run.stderr and not (tmp_path / "t.png").exists()


def test_a_timeline_without_ground_truth_does_not_claim_one(tmp_path):
    model = export_detector(tmp_path / "tones.onnx", frame=True, hop=0.1)
    sf.write(tmp_path / "tones.wav", tone_track(8.0, TONES), SAMPLE_RATE)
    (tmp_path / "matplotlibrc").write_text("svg.fonttype: none\n")  # titles stay text in the SVG
    run = subprocess.run([sys.executable, "-m", "earmark.cli", "listen", str(model), "--source", str(tmp_path / "tones.wav"), "--fast",
                          "--timeline", str(tmp_path / "t.svg")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MATPLOTLIBRC": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    svg = (tmp_path / "t.svg").read_text()
    assert ">detections<" in svg and "ground truth" not in svg
