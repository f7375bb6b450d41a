"""`check_tensorrt` flags what TensorRT's ONNX parser refuses, on hand-made graphs."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from earmark.export.tensorrt import build_engine, check_tensorrt, engine_name


def _save(tmp_path, nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return path


def _qdq_graph(tmp_path, zero_point: np.ndarray):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "scale"), numpy_helper.from_array(zero_point, "zp")]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"], name="quant"),
        helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"], name="dequant"),
    ]
    return _save(tmp_path, nodes, [x], [y], inits)


def test_stft_node_is_flagged(tmp_path):
    signal = helper.make_tensor_value_info("signal", TensorProto.FLOAT, [1, 16000, 1])
    spec = helper.make_tensor_value_info("spec", TensorProto.FLOAT, [1, 98, 201, 2])
    inits = [numpy_helper.from_array(np.array(160, np.int64), "step"),
             numpy_helper.from_array(np.hanning(400).astype(np.float32), "window")]
    path = _save(tmp_path, [helper.make_node("STFT", ["signal", "step", "window"], ["spec"], name="stft")], [signal], [spec], inits)
    findings = check_tensorrt(path)
    assert [f.node for f in findings] == ["stft"]
    assert "STFT" in findings[0].problem


def test_asymmetric_qdq_is_flagged(tmp_path):
    findings = check_tensorrt(_qdq_graph(tmp_path, np.array(3, np.int8)))
    assert {f.node for f in findings} == {"quant", "dequant"}
    assert all("zero point" in f.problem for f in findings)


def test_unsigned_qdq_is_flagged(tmp_path):
    findings = check_tensorrt(_qdq_graph(tmp_path, np.array(0, np.uint8)))
    assert findings and all("signed INT8" in f.problem for f in findings)


def test_symmetric_signed_qdq_passes(tmp_path):
    assert check_tensorrt(_qdq_graph(tmp_path, np.array(0, np.int8))) == []


def test_dynamic_time_axis_is_flagged(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 64, "frames"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1, 64, "frames"])
    findings = check_tensorrt(_save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [x], [y]))
    assert len(findings) == 1 and "[3]" in findings[0].problem


def test_engine_name_carries_hash_version_and_gpu(tmp_path):
    path = _qdq_graph(tmp_path, np.array(0, np.int8))
    name = engine_name(path, "10.3.0", "NVIDIA Jetson Orin Nano")
    assert name.startswith("m-") and name.endswith("-trt10.3.0-nvidia-jetson-orin-nano.engine")


def test_build_without_tensorrt_says_how_to_get_it(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="JetPack.*pip install earmark\\[tensorrt\\]"):
        build_engine(_qdq_graph(tmp_path, np.array(0, np.int8)))


def test_conv_bias_behind_a_cast_is_flagged(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
    inits = [numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w"), numpy_helper.from_array(np.zeros(2, np.float16), "b16")]
    nodes = [helper.make_node("Cast", ["b16"], ["b"], to=TensorProto.FLOAT), helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv")]
    findings = check_tensorrt(_save(tmp_path, nodes, [x], [y], inits))
    assert [f.node for f in findings] == ["conv"] and "initializers only" in findings[0].problem


def test_the_cli_says_each_problem_once_and_what_to_run(tmp_path, capsys):
    from earmark.cli import main

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
    inits = [numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w"), numpy_helper.from_array(np.zeros(2, np.float16), "b16")]
    nodes = [helper.make_node("Cast", ["b16"], ["b"], to=TensorProto.FLOAT)]
    nodes += [helper.make_node("Conv", [f"h{i}" if i else "x", "w", "b"], [f"h{i + 1}" if i < 4 else "y"], name=f"conv{i}") for i in range(5)]
    assert main(["export", "--check", "tensorrt", str(_save(tmp_path, nodes, [x], [y], inits))]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("refused:")] == [
        "refused: the conv bias is computed (e.g. float16 behind a Cast, as the CPU scopes weights and pointwise store it): TensorRT takes conv "
        "biases as initializers only (5 nodes: conv0, conv1, conv2, ...)"]
    assert [line for line in out if line.startswith("to fix:")] == [
        "to fix: export it again for TensorRT: earmark export CHECKPOINT --int8 --calib MANIFEST --int8-scope all"]
