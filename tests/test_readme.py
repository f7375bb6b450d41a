"""The README is executable: its tour runs on the demo data, and the verb table's verbs run too.

Budgets are cut by options appended to each command (argparse keeps the last value); a BEATs file with the
official key layout (random tiny weights) stands in for the download. The microphone/MQTT line runs in
tests/runtime (PulseAudio null-sink microphone, real mosquitto) with the same options.
"""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from earmark.cli import VERBS, verb_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
TOUR = re.search(r"### A tour with real commands\n\n```bash\n(.*?)```", README, re.S).group(1)
COMMANDS = [line.split("  #")[0].strip() for line in TOUR.strip().splitlines()]
BUDGET = {  # command prefix -> options appended for a test-sized run
    "earmark data synth": ["--clips-per-class", "6", "--soundscapes", "2"],
    "earmark finetune": ["--epochs", "1", "--batch-size", "16", "--workers", "0"],
    "earmark distill": ["--epochs", "1", "--qat-epochs", "1", "--batch-size", "16", "--workers", "0"],
    "earmark bench": ["--runs", "3", "--json", "bench.json"],
}
MIC = "--source mic"  # runs in tests/runtime/test_daemon*.py against a software microphone and a real broker
# what each README command prints (a fragment of its output)
SHOWS = {
    "earmark data synth": "wrote data/clips.csv", "earmark data check": "clips, 8 classes", "earmark convert": "wrote ckpt/beats",
    "earmark finetune": "next: earmark distill", "earmark distill": "next: earmark export", "earmark complexity": "MACs per second",
    "earmark export": "next: earmark listen", "earmark bench": "p50",
}


def _verb_args(command: str) -> list[str]:
    words = shlex.split(command.split("|")[-1])
    return words[1:]


def test_every_tour_command_parses_with_the_real_options():
    assert COMMANDS and all(c.split("|")[-1].strip().startswith("earmark ") for c in COMMANDS)
    for command in COMMANDS:
        args = _verb_args(command)
        parser = verb_parser(args[0], __import__("importlib").import_module(VERBS[args[0]][0]))
        parser.parse_args(args[1:])  # exits (fails the test) on an unknown or stale option


def test_the_verb_table_names_every_verb():
    table = re.search(r"## The verbs\n\n(.*?)\n\n", README, re.S).group(1)
    assert set(VERBS) - {"demo"} <= set(re.findall(r"^\| `earmark (\w+)", table, re.M))  # demo: `make demo`, above the table


def _official_beats(path: Path) -> None:
    """BEATs_iter3_plus_AS2M.pt's layout (cfg + model state with weight-norm and shared relative-bias keys), tiny and random."""
    from earmark.teachers import create_teacher

    state = create_teacher("beats_tiny").state_dict()
    w = state.pop("encoder.pos_conv.0.weight")
    state["encoder.pos_conv.0.weight_g"], state["encoder.pos_conv.0.weight_v"] = w.norm(dim=(0, 1), keepdim=True), w
    state["encoder.layers.1.self_attn.relative_attention_bias.weight"] = state["encoder.layers.0.self_attn.relative_attention_bias.weight"]
    cfg = dict(embed_dim=32, encoder_embed_dim=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_embed_dim=128,
               input_patch_size=16, conv_pos=16, conv_pos_groups=4, num_buckets=320, max_distance=800, deep_norm=True,
               relative_position_embedding=True, gru_rel_pos=True, layer_norm_first=False, finetuned_model=False)
    torch.save({"cfg": cfg, "model": state}, path)


def _run(args: list[str], cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "earmark.cli", *args], cwd=cwd, capture_output=True, timeout=900, input=stdin)
    out = subprocess.CompletedProcess(run.args, run.returncode, run.stdout.decode(), run.stderr.decode())
    assert out.returncode == 0, f"earmark {' '.join(args)}\n{out.stderr[-3000:]}"
    return out


def _records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _readme_keys() -> dict[str, set[str]]:
    block = re.search(r"## Events \(what `earmark listen` prints\).*?```json\n(.*?)```", README, re.S).group(1)
    return {r["type"]: set(r) for r in map(json.loads, block.strip().splitlines())}


@pytest.mark.slow
def test_the_tour_and_the_verb_table_run_on_the_demo_data(tmp_path):
    import soundfile as sf

    _official_beats(tmp_path / "BEATs_iter3_plus_AS2M.pt")
    ran = set()
    listened = []
    for command in COMMANDS:
        if MIC in command:
            continue
        args = _verb_args(command)
        args += next((extra for prefix, extra in BUDGET.items() if " ".join(["earmark", *args]).startswith(prefix)), [])
        stdin = None
        if command.startswith("ffmpeg"):  # what ffmpeg would pipe: 16 kHz s16le mono
            wave, _ = sf.read(tmp_path / "data" / "audio" / "scape-000.wav", dtype="int16")
            stdin = wave.tobytes()
        out = _run(args, tmp_path, stdin)
        ran.add(args[0])
        shown = next((text for prefix, text in SHOWS.items() if command.startswith(prefix)), None)
        assert shown is None or shown in out.stdout, f"{command}: {out.stdout[-2000:]}"
        if args[0] == "listen":
            listened += _records(out.stdout)
    keys = _readme_keys()
    assert listened and {r["type"] for r in listened} <= set(keys)
    for kind in {r["type"] for r in listened}:  # the README's example of each kind is what listen writes
        assert any(keys[kind] <= set(r) for r in listened if r["type"] == kind), (kind, keys[kind])
    # the calibrated thresholds of a one-epoch student may hear nothing: a low threshold shows the event records
    labels = json.loads((tmp_path / "runs" / "tfsep" / "student-int8" / "earmark.json").read_text())["labels"]
    events = [r for r in _records(_run(["listen", "tfsep-int8.onnx", "--source", "data/audio/scape-000.wav", "--fast",
                                        "--threshold", f"{labels[0]}=0.01"], tmp_path).stdout) if r["type"] == "event"]
    assert events and all(keys["event"] <= set(e) for e in events)

    # the verb table's other verbs, on the same data and models
    for args in (["pretrain", "acmsskd", "--data", "data/clips.csv", "--teacher", "acmsskd_tiny", "--steps", "2", "--batch-size", "4",
                  "--clip-seconds", "1", "--workers", "0", "--out", "runs/pretrain"],
                 ["predict", "runs/beats-ft/teacher", "--data", "data/clips.csv", "--out", "cache", "--workers", "0"],
                 ["export", "runs/tfsep/student", "--out", "tfsep-fp32.onnx"],
                 ["export", "--check", "tensorrt", "tfsep-fp32.onnx"],
                 ["data", "shard", "data/clips.csv", "shards"],
                 ["eval", "tfsep-int8.onnx", "data/clips.csv", "--out", "eval"]):
        _run(args, tmp_path)
        ran.add(args[0])
    # the tour's QAT file is a CPU file (scope weights, the default: float16 biases behind a Cast); the check says what TensorRT needs
    refused = subprocess.run([sys.executable, "-m", "earmark.cli", "export", "--check", "tensorrt", "tfsep-int8.onnx"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and refused.stdout.count("to fix: distill it again for TensorRT: earmark distill ... --qat "
                                                            "--int8-scope all") == 1, refused.stdout[-2000:]
    assert refused.stdout.count("refused: the conv bias is computed") == 1  # once, with the count of nodes, not once per conv
    table = re.search(r"## The verbs\n\n(.*?)\n\n", README, re.S).group(1)
    assert set(re.findall(r"^\| `earmark (\w+)", table, re.M)) <= ran | {"demo", "tune", "adapt"}  # demo: tests/test_demo.py; tune
    # needs a run trained on soundscapes (--backgrounds), which the tour's is not: tests/distill/test_distill.py runs it; adapt
    # needs examples and a site recording: tests/adapt runs it, and tests/runtime/test_recording.py the two listen lines before it
