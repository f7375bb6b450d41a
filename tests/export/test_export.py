"""`earmark export`: every student to ONNX with metadata and parity, fp16, int8 (PTQ and QAT), bad input."""

import json
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from earmark.audio.metadata import METADATA_KEY, ModelMetadata
from earmark.audio.synth import synthesize
from earmark.engine.checkpoint import save_checkpoint
from earmark.export import check_tensorrt, export_onnx, session
from earmark.export.benchmark import optimized_op_counts
from earmark.students import REGISTRY, create_student, student_checkpoint_meta

LABELS = ["alarm", "beep", "bell", "burst", "chirp", "knock", "siren", "whistle"]


def _student_ckpt(path, name, task="clip", **overrides):
    torch.manual_seed(0)
    model = create_student(name, len(LABELS), task, **overrides)
    save_checkpoint(path, model.state_dict(), student_checkpoint_meta(model, name, LABELS, task, overrides, window_seconds=1.0))
    return path


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("calib"), seed=2, clips_per_class=3, soundscapes=1).clips_csv


def _metadata(path) -> ModelMetadata:
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return ModelMetadata.from_json(props[METADATA_KEY])


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("task", ["clip", "frame"])
def test_every_student_exports_with_metadata_and_parity(name, task, tmp_path):
    ckpt = _student_ckpt(tmp_path / "ckpt", name, task)
    result = export_onnx(ckpt, tmp_path / "m.onnx")
    onnx.checker.check_model(onnx.load(str(result.path)))
    meta = _metadata(result.path)
    assert meta.labels == tuple(LABELS) and meta.task == task and meta.precision == "fp32"
    assert meta.frontend == create_student(name, 2).frontend and meta.source_checkpoint_sha256
    assert result.parity.max_abs_diff < 1e-4 and result.parity.top1_agreement == 1.0
    outputs = [o.name for o in onnx.load(str(result.path)).graph.output]
    # a causal frame model (stateful) returns its next state after its scores
    assert outputs == (["frame_probs", "clip_probs"] if task == "frame" else ["clip_probs"]) + list(meta.state_outputs)
    if task == "frame":
        assert meta.frame_hop_seconds > 0 and meta.objective == "detect"


def test_a_student_in_onnx_runtimes_blocked_layout_exports_with_parity_for_tensorrt_too(tmp_path, calib):
    ckpt = _student_ckpt(tmp_path / "ckpt", "tfsepnet40", base_channels=32)  # widths that runtime_layout rewrites, as tfsepnet64's
    result = export_onnx(ckpt, tmp_path / "m.onnx")
    ops = [n.op_type for n in onnx.load(str(result.path)).graph.node]
    assert {"Resize", "AveragePool"} <= set(ops) and ops.count("ReduceMean") == 1  # the classifier's mean only
    assert result.parity.max_abs_diff <= 1e-5 and result.parity.top1_agreement == 1.0
    assert check_tensorrt(result.path) == []
    ptq = export_onnx(ckpt, tmp_path / "q.onnx", "int8", calib=str(calib), int8_scope="all", min_agreement=0.0)
    assert check_tensorrt(ptq.path) == [] and _metadata(ptq.path).quantization["float_convs"] == 0


def test_fp16_and_dynamic_batch(tmp_path):
    ckpt = _student_ckpt(tmp_path / "ckpt", "tfsepnet40")
    result = export_onnx(ckpt, tmp_path / "h.onnx", "fp16", batch=None)
    assert result.parity.max_abs_diff < 1e-2
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in onnx.load(str(result.path)).graph.initializer)
    x = np.random.default_rng(0).standard_normal((3, 1, 256, 64)).astype(np.float32)
    assert session(result.path).run(None, {"features": x})[0].shape == (3, len(LABELS))


def _zero_points(path):
    graph = onnx.load(str(path)).graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    values.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"})
    return [values[n.input[2]] for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]


def _convs(path):
    """(all Conv nodes, those with a kernel larger than 1x1)."""
    convs = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    return convs, [n for n in convs if any(k > 1 for a in n.attribute if a.name == "kernel_shape" for k in a.ints)]


def _int8_weights(path):
    """(INT8 initializers read by a DequantizeLinear or, weight-only, by a Cast, FLOAT conv weights) of an exported file."""
    graph = onnx.load(str(path)).graph
    inits = {t.name: t for t in graph.initializer}
    dequantized = {n.input[0] for n in graph.node if n.op_type in ("DequantizeLinear", "Cast") and n.input[0] in inits}
    int8 = [inits[name] for name in dequantized if inits[name].data_type == onnx.TensorProto.INT8]
    float_weights = [n.input[1] for n in graph.node if n.op_type == "Conv" and n.input[1] in inits]
    return int8, float_weights


@pytest.mark.parametrize("scope", ["pointwise", "all"])
def test_int8_post_training_is_symmetric_signed_in_its_scope_and_reports_accuracy(tmp_path, calib, scope):
    ckpt = _student_ckpt(tmp_path / "ckpt", "tfsepnet40", base_channels=16)
    result = export_onnx(ckpt, tmp_path / "q.onnx", "int8", calib=str(calib), int8_scope=scope, min_agreement=0.0)
    zero_points = _zero_points(result.path)
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert check_tensorrt(result.path) == []
    meta = _metadata(result.path)
    assert set(result.accuracy) == {"exported", "pytorch_fp32"} and meta.precision == "int8"
    assert meta.quantization["method"] == "ptq" and meta.quantization["scope"] == scope
    convs, spatial = _convs(result.path)
    assert meta.quantization["float_convs"] == (len(spatial) if scope == "pointwise" else 0) < len(convs)
    int8 = {t.name for t in _int8_weights(result.path)[0]}  # convs may share one (runtime_layout's equal mean kernels)
    producers = {n.output[0]: n for n in onnx.load(str(result.path)).graph.node}
    reading_int8 = [c for c in convs if c.input[1] in producers and producers[c.input[1]].input[0] in int8]
    assert len(reading_int8) == meta.quantization["int8_convs"] == len(convs) - meta.quantization["float_convs"]
    # 7-bit weights: an x86 CPU without VNNI sums u8 x s8 pairs in 16 bits, which full-range weights overflow (docs/export.md)
    assert max(np.abs(numpy_helper.to_array(t).astype(np.int32)).max() for t in _int8_weights(result.path)[0]) <= 64


def _qat_checkpoint(path, scope):
    from earmark.students import quantize, save_quantized_checkpoint

    torch.manual_seed(0)
    model = create_student("tfsepnet40", len(LABELS), base_channels=16).eval()
    for m in model.modules():  # BatchNorm statistics that folding must carry into the convs
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0), m.weight.data.uniform_(-1.5, 1.5)
    meta = student_checkpoint_meta(model, "tfsepnet40", LABELS, overrides={"base_channels": 16})
    save_quantized_checkpoint(path, quantize(model, [torch.randn(4, 1, 256, 64)], scope), meta, scope)
    return path


@pytest.mark.parametrize("scope", ["pointwise", "all", "weights"])
def test_int8_from_a_qat_checkpoint_stores_int8_weights_and_no_batchnorm(tmp_path, scope):
    qat = _qat_checkpoint(tmp_path / "student-int8", scope)
    # An untrained model's classes are near ties that a one-level rounding flip reorders: gate on the difference here.
    result = export_onnx(qat, tmp_path / "qat.onnx", min_agreement=0.0)
    assert result.precision == "int8" and all(z.dtype == np.int8 and not z.any() for z in _zero_points(result.path))
    assert result.parity.max_abs_diff < 0.15
    graph = onnx.load(str(result.path)).graph
    assert not [n for n in graph.node if n.op_type in ("BatchNormalization", "FakeQuantize")]
    int8, float_weights = _int8_weights(result.path)
    meta = _metadata(result.path)
    convs, spatial = _convs(result.path)
    producers = {o: n for n in graph.node for o in n.output}
    # scope weights is traced in runtime_layout's graph, whose block means are depthwise convs of a constant 1/n kernel,
    # stored as one value expanded to its shape; every other conv weight is stored INT8
    means = [c for c in convs if producers.get(c.input[1]) is not None and producers[c.input[1]].op_type == "Expand"]
    assert len(means) == (2 * 9 if scope == "weights" else 0) and not float_weights
    assert meta.quantization["float_convs"] == len(means)
    convs = [c for c in convs if c not in means]
    spatial = [c for c in spatial if c not in means]
    # weight-only (a float input) for the spatial convs in pointwise, for all in weights
    assert len(int8) == meta.quantization["int8_convs"] == len(convs)
    assert meta.quantization["weight_only_convs"] == {"pointwise": len(spatial), "all": 0, "weights": len(convs)}[scope]
    assert meta.quantization["scope"] == scope
    constant = {t.name for t in graph.initializer}
    readers = {i: n.op_type for n in graph.node for i in n.input}
    activations = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] not in constant]
    # scope weights broadcasts the blocks' residuals by an exact upsample (runtime_layout); the others keep the traced adds
    assert sum(n.op_type == "Resize" for n in graph.node) == (2 * 9 if scope == "weights" else 0)
    if scope == "all":
        assert check_tensorrt(result.path) == []
    else:  # a CPU file: biases stored as float16 behind a Cast, which TensorRT's parser refuses (it says so)
        assert {f.problem.split(":")[0] for f in check_tensorrt(result.path)} == {"the conv bias is computed (e.g. float16 behind a Cast, as the CPU scopes weights and pointwise store it)"}
        # activations are quantized only where a pointwise conv reads them, and not at all in scope weights
        assert {readers[n.output[0]] for n in activations} == ({"Conv"} if scope == "pointwise" else set())
        assert len(activations) <= len(int8) - len(spatial)
        kinds = {t.name: t.data_type for t in graph.initializer}
        sizes = {t.name: int(np.prod(t.dims)) for t in graph.initializer}
        for conv in convs:  # biases: float16, packed behind one Cast and one Split (short ones stay float32)
            bias = conv.input[2]
            assert bias in sizes and sizes[bias] < 16 or \
                producers[bias].op_type == "Split" and kinds[producers[producers[bias].input[0]].input[0]] == onnx.TensorProto.FLOAT16
        # spatial weights: INT8 * scale, folded by ORT at load
        for conv in spatial if scope == "pointwise" else convs:
            mul = producers[conv.input[1]]
            assert mul.op_type == "Mul" and kinds[producers[mul.input[0]].input[0]] == onnx.TensorProto.INT8
            scale = producers.get(mul.input[1])  # a per-channel scale that is one value repeated is stored once
            assert mul.input[1] in kinds or scale.op_type == "Expand"
    with pytest.raises(ValueError, match="quantization-aware trained in scope"):
        export_onnx(qat, tmp_path / "other.onnx", int8_scope="all" if scope == "pointwise" else "pointwise")


def test_weight_only_int8_runs_the_fp32_graph_op_for_op_in_a_third_of_its_bytes(tmp_path):
    from earmark.students import quantize, save_quantized_checkpoint

    torch.manual_seed(0)
    model = create_student("tfsepnet40", len(LABELS)).eval()  # a doubled stem, joint depthwise convs and mean convs
    for m in model.modules():  # BatchNorm statistics and biases, so that no two biases deduplicate
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.bias.data.uniform_(-0.5, 0.5)
    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, model.state_dict(), student_checkpoint_meta(model, "tfsepnet40", LABELS, window_seconds=1.0))
    save_quantized_checkpoint(tmp_path / "student-int8", quantize(model, [torch.randn(4, 1, 256, 64)], "weights"),
                              student_checkpoint_meta(model, "tfsepnet40", LABELS, window_seconds=1.0), "weights")
    fp32 = export_onnx(ckpt, tmp_path / "fp32.onnx")
    int8 = export_onnx(tmp_path / "student-int8", tmp_path / "int8.onnx", min_agreement=0.0)
    assert int8.parity.max_abs_diff <= 1e-5  # against the fake-quantized model, through the regrouped convs
    # ONNX Runtime folds every INT8 weight (Cast * scale) and every expanded constant at load: what runs is fp32's graph
    ops = optimized_op_counts(int8.path, tmp_path)
    assert ops == optimized_op_counts(fp32.path, tmp_path) and not {"Cast", "Expand", "DequantizeLinear"} & set(ops)
    assert int8.bytes <= 0.35 * fp32.bytes


def test_qat_int8_file_stores_a_quarter_of_the_fp32_weight_bytes(tmp_path):
    from earmark.students import stored_bytes

    qat = _qat_checkpoint(tmp_path / "student-int8", "all")
    ckpt = _student_ckpt(tmp_path / "ckpt", "tfsepnet40", base_channels=16)
    int8 = stored_bytes(export_onnx(qat, tmp_path / "student-int8.onnx", min_agreement=0.0).path)
    fp32 = stored_bytes(export_onnx(ckpt, tmp_path / "fp32.onnx").path)
    # every conv weight is one byte; what stays float32 is biases and per-channel scales
    assert int8["int8"] > 0.2 * fp32["float32"] and int8["int8"] + int8["float32"] < 0.45 * fp32["float32"]


def _quantized_dtypes(path):
    """The dtypes of the activations every QuantizeLinear writes and of the INT8 weights behind DequantizeLinear."""
    graph = onnx.load(str(path)).graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    activations = {values[n.input[2]].dtype for n in graph.node if n.op_type == "QuantizeLinear"}
    weights = {values[n.input[0]].dtype for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in values}
    return activations, weights


def test_post_training_integer_scope_runs_the_pointwise_convs_of_whole_maps_as_qlinearconv(tmp_path, calib):
    from earmark.export.quantize import convs_on_a_line

    ckpt = _student_ckpt(tmp_path / "ckpt", "tfsepnet40", base_channels=16)
    result = export_onnx(ckpt, tmp_path / "q.onnx", "int8", calib=str(calib), int8_scope="integer", min_agreement=0.0)
    assert result.parity.finite and _metadata(result.path).quantization["scope"] == "integer"
    activations, weights = _quantized_dtypes(result.path)
    assert activations == {np.dtype(np.uint8)} and np.dtype(np.int8) in weights  # u8 activations, s8 weights (u8s8)
    convs, spatial = _convs(result.path)
    on_a_line = convs_on_a_line(onnx.load(str(result.path)))
    ops = optimized_op_counts(result.path, tmp_path)
    # every 1x1 conv over a whole feature map runs as a QLinearConv with its INT32 bias, the spatial convs and the 1x1
    # convs of a row (after a block's mean) in float; adds and concats in integer
    assert ops["QLinearConv"] == len(convs) - len(spatial) - len(on_a_line) > 0
    assert ops["Conv"] + ops["FusedConv"] == len(spatial) + len(on_a_line) and on_a_line
    assert {"QLinearAdd", "QLinearConcat"} <= set(ops) and "Add" not in ops
    assert _int8_weights(result.path)[1] == [] and "Cast" not in ops  # float convs' weights stored INT8, folded at load


def test_integer_scope_gives_a_vit_u8s8_matmuls_never_s8s8(tmp_path, calib):
    ckpt = _student_ckpt(tmp_path / "ckpt", "vit_micro_audio")
    result = export_onnx(ckpt, tmp_path / "q.onnx", "int8", calib=str(calib), int8_scope="integer", min_agreement=0.0)
    activations, weights = _quantized_dtypes(result.path)
    assert activations == {np.dtype(np.uint8)} and np.dtype(np.int8) in weights
    ops = optimized_op_counts(result.path, tmp_path)
    assert ops["QGemm"] + ops["QLinearMatMul"] > 0 and "MatMul" not in ops and "MatMulInteger" not in ops


def test_integer_scope_is_post_training_only(tmp_path):
    with pytest.raises(ValueError, match="post-training only"):
        export_onnx(_qat_checkpoint(tmp_path / "student-int8", "weights"), tmp_path / "q.onnx", int8_scope="integer")


def test_weight_only_int8_is_refused_for_post_training(tmp_path, calib):
    ckpt = _student_ckpt(tmp_path / "ckpt", "tfsepnet40", base_channels=16)
    with pytest.raises(ValueError, match="distill --qat --int8-scope weights"):
        export_onnx(ckpt, tmp_path / "q.onnx", "int8", calib=str(calib), int8_scope="weights")


def test_int8_gates_refuse_disagreement_and_name_the_failed_gate(tmp_path, calib):
    ckpt = _student_ckpt(tmp_path / "ckpt", "tfsepnet40", base_channels=16)
    with pytest.raises(RuntimeError) as err:
        export_onnx(ckpt, tmp_path / "q.onnx", "int8", calib=str(calib), min_agreement=1.01)
    assert "top-1 agreement" in str(err.value) and "FAILED" in str(err.value) and "max |diff|" in str(err.value)
    assert not (tmp_path / "q.onnx").exists() and not (tmp_path / "q.onnx.partial").exists()
    run = subprocess.run([sys.executable, "-m", "earmark.cli", "export", str(ckpt), "--int8", "--calib", str(calib), "--int8-scope", "all",
                          "--min-agreement", "1.01"], capture_output=True, text=True)  # a gate no model passes is a typo on the CLI
    assert run.returncode == 2 and run.stderr.strip().endswith("'1.01' is not a probability from 0 to 1; see `earmark export --help`.")
    assert not (tmp_path / "ckpt-ptq-int8.onnx").exists()


def test_nan_parity_never_passes():
    from earmark.export.onnx_export import Parity

    gates = Parity(float("nan"), float("nan"), 8, finite=False).gates(0.15, 0.0)
    assert [g.passed for g in gates] == [False, False, False]


def test_bad_input_gets_one_clear_message(tmp_path):
    ckpt = _student_ckpt(tmp_path / "ckpt", "tfsepnet16")
    with pytest.raises(ValueError, match="int8 needs --calib"):
        export_onnx(ckpt, tmp_path / "q.onnx", "int8")
    (tmp_path / "exists.onnx").write_bytes(b"")
    with pytest.raises(FileExistsError, match="--force"):
        export_onnx(ckpt, tmp_path / "exists.onnx")
    (tmp_path / "noparams").mkdir()
    with pytest.raises(ValueError, match="no earmark.json"):
        export_onnx(tmp_path / "noparams", tmp_path / "x.onnx")


def test_cli_prints_a_table_and_the_next_command(tmp_path):
    ckpt = _student_ckpt(tmp_path / "ckpt", "tfsepnet16")
    run = subprocess.run([sys.executable, "-m", "earmark.cli", "export", str(ckpt), "--out", str(tmp_path / "m.onnx")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "parity" in run.stdout and "earmark listen" in run.stdout and "ORT CPU ms" in run.stdout and "flags:" in run.stdout
    sizes = subprocess.run([sys.executable, "-m", "earmark.cli", "complexity", str(tmp_path / "m.onnx")], capture_output=True, text=True)
    assert sizes.returncode == 0, sizes.stderr
    from earmark.students import stored_bytes

    assert f"{stored_bytes(tmp_path / 'm.onnx')['float32']:,}" in sizes.stdout and "fits the DCASE limit" in sizes.stdout
    bad = subprocess.run([sys.executable, "-m", "earmark.cli", "export", str(ckpt), "--format", "tflite"], capture_output=True, text=True)
    assert bad.returncode == 1 and "unknown format 'tflite'" in bad.stderr
    bench = subprocess.run([sys.executable, "-m", "earmark.cli", "bench", str(tmp_path / "m.onnx"), "--runs", "5",
                            "--json", str(tmp_path / "b.json")], capture_output=True, text=True)
    assert bench.returncode == 0, bench.stderr
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert rows and all(r["p50_ms"] > 0 for r in rows)


def test_a_small_fine_tuned_teacher_exports_with_parity(tmp_path):
    from earmark.teachers import TeacherClassifier, create_teacher, teacher_checkpoint_meta

    torch.manual_seed(0)
    backbone = create_teacher("asit_tiny")
    model = TeacherClassifier(backbone, len(LABELS), "prenorm")
    meta = teacher_checkpoint_meta(backbone.frontend, "asit_tiny", {}, LABELS, "clip", "prenorm", window_seconds=1.0)
    save_checkpoint(tmp_path / "teacher", model.state_dict(), meta)
    result = export_onnx(tmp_path / "teacher", tmp_path / "t.onnx")
    assert result.parity.max_abs_diff < 1e-4 and _metadata(result.path).frontend.name == "ast"


def test_weight_only_int8_and_float16_storage_keep_what_the_graph_computes():
    from earmark.export.qdq import compact, dequantize_weight_only, store_float16_exact, store_int8_weights

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 8, 3, padding=1)
    with torch.no_grad():  # the weight on its INT8 grid and the bias on the float16 grid, as QAT leaves them
        scale = conv.weight.abs().amax(dim=(1, 2, 3)) / 127
        conv.weight.copy_(torch.fake_quantize_per_channel_affine(conv.weight, scale, torch.zeros(8, dtype=torch.int32), 0, -128, 127))
        conv.bias.copy_(conv.bias.half().float())

    class WeightOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            weight = torch.fake_quantize_per_channel_affine(self.conv.weight, scale, torch.zeros(8, dtype=torch.int32), 0, -128, 127)
            return torch.nn.functional.conv2d(x, weight, self.conv.bias, padding=1)

    x = torch.randn(1, 4, 16, 16)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        torch.onnx.export(WeightOnly(), (x,), f"{tmp}/m.onnx", dynamo=False, opset_version=17, input_names=["x"])
        model = onnx.load(f"{tmp}/m.onnx")
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")  # constant weights on both sides: the same conv kernel
    run = lambda m: ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    reference = run(model)
    assert store_int8_weights(model) == 1 and dequantize_weight_only(model) == 1 and store_float16_exact(model) == 0  # 8 < 16 elements
    compact(model)
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Cast", "Mul", "Conv"]
    assert np.array_equal(run(model), reference)
    with tempfile.TemporaryDirectory() as tmp:  # ONNX Runtime folds the Cast and the Mul when the session starts
        folding = ort.SessionOptions()
        folding.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        folding.optimized_model_filepath = f"{tmp}/optimized.onnx"
        ort.InferenceSession(model.SerializeToString(), folding, providers=["CPUExecutionProvider"])
        assert [n.op_type for n in onnx.load(f"{tmp}/optimized.onnx").graph.node] == ["Conv"]
    assert sorted(t.data_type for t in model.graph.initializer) == sorted([onnx.TensorProto.INT8, onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT])
    with torch.no_grad():
        wide = torch.nn.Conv2d(4, 32, 1)
        wide.bias.copy_(wide.bias.half().float())
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        torch.onnx.export(wide, (x,), f"{tmp}/w.onnx", dynamo=False, opset_version=17, input_names=["x"])
        model = onnx.load(f"{tmp}/w.onnx")
    reference = run(model)
    assert store_float16_exact(model) == 1  # the bias; the weights are not float16 numbers
    compact(model)
    assert [n.op_type for n in model.graph.node] == ["Cast", "Conv"] and np.array_equal(run(model), reference)


def test_compact_keeps_what_the_graph_computes_in_fewer_bytes():
    from earmark.export.qdq import compact

    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))
    x = torch.randn(1, 1, 16, 16)
    with tempfile.TemporaryDirectory() as tmp:
        torch.onnx.export(conv, (x,), f"{tmp}/m.onnx", dynamo=False, opset_version=17, input_names=["x"])
        model = onnx.load(f"{tmp}/m.onnx")
    reference = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    size = model.ByteSize()
    compact(model)
    onnx.checker.check_model(model)
    assert model.ByteSize() < size
    for node in model.graph.node:
        assert not node.name and not [a for a in node.attribute if a.name in ("group", "dilations", "strides")]
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    assert np.array_equal(out, reference)
