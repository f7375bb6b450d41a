"""`earmark adapt CHECKPOINT`: the student itself fine-tuned to new sounds (synthetic, on a random base), written as fp32
and INT8 files that `listen` and `eval` run; its scores rise on held-out examples and stay low on held-out site audio."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from earmark.cli import main
from earmark.engine.checkpoint import save_checkpoint
from earmark.runtime import classify_offline, load_backend
from earmark.students import create_student, student_checkpoint_meta

from .test_adapt import ENROLLED, enrolment  # noqa: F401 (the fixture)

MARGIN = 0.3  # a label's peak score on its held-out events above its peak on the held-out site alone
BENCH = Path(__file__).resolve().parents[2] / "bench"
ROUNDING_ATOL = 2e-3  # a causal INT8 file's peak scores against its fp32 file's: per-channel rounding moves them 1e-4 to 5e-4 here


@pytest.fixture(scope="module")
def tuned(enrolment):  # noqa: F811
    """`earmark adapt` of the base checkpoint, fp32 and INT8, with a short fine-tune."""
    root, _, _ = enrolment
    out = root / "tuned.onnx"
    assert main(["adapt", str(root / "ckpt"), str(root / "examples"), "--background", str(root / "site.wav"), "--new-labels",
                 "--steps", "100", "--body-lr", "3e-3", "--int8", "--median", "3", "--min-duration", "0.1", "--out", str(out)]) == 0
    return {"fp32": out, "int8": root / "tuned-int8.onnx"}


def test_the_same_seed_gives_the_same_fine_tuned_file(enrolment, tmp_path):  # noqa: F811
    root, _, _ = enrolment
    outs = [tmp_path / f"{k}.onnx" for k in range(2)]
    for out in outs:  # one process: the global RNGs have moved on between the two runs
        assert main(["adapt", str(root / "ckpt"), str(root / "examples"), "--background", str(root / "site.wav"), "--new-labels",
                     "--steps", "3", "--seed", "5", "--out", str(out)]) == 0
    first, second = ({t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer} for out in outs)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def _peaks(model, wav, spans=None) -> dict[str, list[float]]:
    """Each label's peak frame score over each span (seconds), or over the whole file."""
    frames = [s for window in classify_offline(model, wav) for s in window.segments]
    labels = load_backend(model).metadata.labels
    spans = spans or [(0.0, np.inf, label) for label in labels]
    return {label: [max(f.probs[labels.index(label)] for f in frames if f.end > on and f.start < off)
                    for on, off, lab in spans if lab == label] for label in labels}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_fine_tune_learns_the_new_sounds_and_not_the_site(enrolment, tuned, precision):  # noqa: F811
    root, _, references = enrolment
    events, site = _peaks(tuned[precision], root / "held.wav", references), _peaks(tuned[precision], root / "quiet.wav")
    for label in ENROLLED:
        assert np.median(events[label]) > site[label][0] + MARGIN, (label, events[label], site[label])


def test_the_tuned_files_record_their_enrolment_and_run_in_listen_and_eval(enrolment, tuned, tmp_path):  # noqa: F811
    root, _, references = enrolment
    for precision, model in tuned.items():
        meta = load_backend(model).metadata
        assert meta.labels == tuple(ENROLLED) and meta.thresholds == meta.adaptation["validation"]["thresholds"]
        assert meta.adaptation["head"] == f"fine-tuned student, {precision}" and meta.adaptation["base"]["labels"] == ["x", "y"]
        assert meta.precision == precision
    run = subprocess.run([sys.executable, "-m", "earmark.cli", "listen", str(tuned["int8"]), "--source", str(root / "held.wav"), "--fast"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    scapes = tmp_path / "held.tsv"
    scapes.write_text("filename\tonset\toffset\tevent_label\n"
                      + "".join(f"{root / 'held.wav'}\t{on:.3f}\t{off:.3f}\t{label}\n" for on, off, label in references))
    assert main(["eval", str(tuned["fp32"]), str(scapes), "--out", str(tmp_path / "eval"), "--timelines", "0"]) == 0
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["events"]["0.2"]["references"] == len(references)


def test_bench_enrol_thresholds_reproduces_the_thresholds_adapt_wrote(enrolment, tuned):  # noqa: F811
    """The bench rebuilds the tuning timelines from the file's adaptation record and applies adapt's rule again: its
    first row's thresholds are the file's own. The test soundscape is the held-out one, in bench_adapt's layout."""
    root, _, references = enrolment
    scapes = root / "test" / "scapes"
    scapes.mkdir(parents=True, exist_ok=True)
    (scapes / "soundscapes.tsv").write_text("filename\tonset\toffset\tevent_label\n"
                                           + "".join(f"{root / 'held.wav'}\t{on:.3f}\t{off:.3f}\t{label}\n" for on, off, label in references))
    run = subprocess.run([sys.executable, str(BENCH / "bench_enrol_thresholds.py"), str(tuned["fp32"])], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [line.split(" | ") for line in run.stdout.splitlines() if line.startswith("| ") and "%" in line]
    assert [row[0] for row in rows] == ["| middle best (adapt's)", "| highest best", "| lowest best", "| lowest within 0.05",
                                        "| lowest within 0.1", "| lowest within 0.2", "| test oracle"]
    chosen = dict(pair.rsplit(" ", 1) for pair in rows[0][3].rstrip(" |").split(", "))
    assert {label: float(p) for label, p in chosen.items()} == load_backend(tuned["fp32"]).metadata.thresholds


@pytest.mark.parametrize("case, message", [
    ("clip", "pass a float frame-task student checkpoint"),
    ("int8-onnx", "--int8 applies to a checkpoint folder as MODEL"),
])
def test_what_cannot_be_fine_tuned_is_one_sentence(enrolment, tmp_path, capsys, case, message):  # noqa: F811
    root, base, _ = enrolment
    model = base
    if case == "clip":
        model = tmp_path / "clip"
        student = create_student("tfsepnet40", 2, "clip")
        save_checkpoint(model, student.state_dict(), student_checkpoint_meta(student, "tfsepnet40", ["x", "y"], "clip"))
    args = ["adapt", str(model), str(root / "examples"), "--background", str(root / "site.wav"), "--new-labels", "--int8"]
    assert main([*args, "--out", str(tmp_path / "x.onnx")]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


def test_a_causal_checkpoint_is_enrolled_into_stateful_fp32_and_int8_files_that_learn_the_new_sounds(enrolment, tmp_path):  # noqa: F811
    root, _, references = enrolment
    torch.manual_seed(0)
    student = create_student("crnn_causal_tiny", 2, "frame")
    save_checkpoint(tmp_path / "causal", student.state_dict(),
                    student_checkpoint_meta(student, "crnn_causal_tiny", ["x", "y"], "frame", objective="detect", window_seconds=1.0))
    out = tmp_path / "causal.onnx"
    assert main(["adapt", str(tmp_path / "causal"), str(root / "examples"), "--background", str(root / "site.wav"), "--new-labels",
                 "--steps", "100", "--body-lr", "3e-3", "--median", "1", "--int8", "--out", str(out)]) == 0
    peaks = {}
    for precision, path in (("fp32", out), ("int8", tmp_path / "causal-int8.onnx")):  # int8: weights rounded after the fine-tune
        meta = load_backend(path).metadata
        assert meta.stateful and meta.labels == tuple(ENROLLED) and meta.adaptation["head"] == f"fine-tuned student, {precision}"
        assert meta.precision == precision
        events, site = peaks[precision] = _peaks(path, root / "held.wav", references), _peaks(path, root / "quiet.wav")
        for label in ENROLLED:
            assert np.median(events[label]) > site[label][0] + MARGIN, (precision, label, events[label], site[label])
    for label in ENROLLED:  # the INT8 file is the fp32 one with rounded weights, not a further-trained model
        np.testing.assert_allclose(peaks["int8"][0][label], peaks["fp32"][0][label], atol=ROUNDING_ATOL)
    graph = onnx.load(str(tmp_path / "causal-int8.onnx"))
    int8 = sum(t.data_type == onnx.TensorProto.INT8 for t in graph.graph.initializer)
    assert int8 == sum(node.op_type == "Conv" for node in graph.graph.node)  # every conv's weights stored in INT8 (the GRU's stay float)
