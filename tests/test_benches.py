"""The bench scripts the docs quote run, on the tests' tone detector, and print the rows the docs read."""

import json
import subprocess
import sys
from pathlib import Path

from .runtime.models import export_detector

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench(script: str, *args: str) -> list[str]:
    run = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.splitlines()


def test_bench_frontend_times_each_step_of_one_hop_against_the_model(tmp_path):
    lines = _bench("bench_frontend.py", "--model", str(export_detector(tmp_path / "m.onnx")), "--rounds", "3")
    rows = {line[:22].strip(): line[22:].split() for line in lines[2:-1]}
    assert list(rows) == ["window", "rfft + power", "mel product", "log", "frontend", "of which rfft alone", "scipy float32 rfft", "model"]
    assert all(float(ms) > 0 for ms, _ in rows.values()) and rows["model"][1] == "1.00"
    assert lines[-1].startswith("numpy float64 rfft / scipy float32 rfft: ")  # the dev install has scipy; the edge has not


def test_bench_onnx_latency_compares_files_to_the_first_and_profiles_them_by_op_type(tmp_path):
    first, second = export_detector(tmp_path / "a.onnx"), export_detector(tmp_path / "b.onnx", frame=True)
    lines = _bench("bench_onnx_latency.py", str(first), str(second), "--runs", "5", "--profile")
    table = [line.split() for line in lines[2:4]]
    assert [row[0] for row in table] == [str(first), str(second)] and table[0][-1] == "1.000" and float(table[1][-1]) > 0
    start = lines.index(next(line for line in lines if line.startswith(f"{first}: kernel time")))
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    shares = [float(line.split()[-1].rstrip("%")) for line in lines[start + 1:end]]
    assert shares and abs(sum(shares) - 100) < 1.5  # every op type's kernel time, as shares of the file's total


def test_bench_students_counts_and_times_each_student_in_both_runtimes():
    lines = _bench("bench_students.py", "--only", "tfsepnet40_25ms", "crnn_causal_tiny", "--runs", "2")
    assert "flags:" in lines[0] and "CPU time" in lines[0]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert list(rows) == ["tfsepnet40_25ms", "crnn_causal_tiny"]
    assert rows["tfsepnet40_25ms"][:2] == ["52,290", "5,412,240"]  # the README's students table
    assert all(float(ms) > 0 for row in rows.values() for ms in row[2:])


def test_bench_demo_kd_trains_the_teacher_from_no_kd_runs_and_tables_every_variant(tmp_path):
    lines = _bench("bench_demo_kd.py", "--out", str(tmp_path), "--seeds", "0", "--variants", "kd", "--epochs", "1")
    table = lines[lines.index(next(line for line in lines if line.startswith("Test accuracy"))):]
    assert table[0].startswith("Test accuracy on the 896 clips of fold 5, 1 epochs, 1 thread(s) a run")
    rows = {row.split(":")[0].strip("| "): row for row in table[3:]}
    assert list(rows) == ["no-kd", "kd", "the teacher"] and all(row.rstrip().endswith("% |") for row in rows.values())
    config = json.loads((tmp_path / "kd-s0" / "config.json").read_text())
    assert [Path(t).parent.name for t in config["teachers"]] == ["no-kd-s1", "no-kd-s0"] and config["temperature"] == 2.0
    assert (tmp_path / "no-kd-s1" / "results.json").is_file()  # the teacher's second member, though --seeds named only 0


def test_bench_causal_interleaves_rounds_and_states_each_models_waits_and_cpu_against_the_windowed_one():
    lines = _bench("bench_causal.py", "--seconds", "5", "--rounds", "2")
    assert lines[0].startswith("CPU ") and "flags:" in lines[0] and "one thread each" in lines[0]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert list(rows) == ["crnn_causal.onnx", "tfsepnet40.onnx"]
    assert rows["crnn_causal.onnx"][:5] == ["stateful", "0.0625", "95", "/", "95"]  # hop 62.5 ms + the frontend's 32 ms
    assert rows["tfsepnet40.onnx"][:4] == ["windowed", "0.5000", "345", "/"]  # docs/runtime.md's median (its p90 needs 60 s)
    assert rows["tfsepnet40.onnx"][-2:] == ["1.00", "(1.00-1.00)"] and float(rows["crnn_causal.onnx"][-2]) > 0
