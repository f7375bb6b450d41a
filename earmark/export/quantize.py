"""Post-training static INT8 quantization with ONNX Runtime: symmetric Q/DQ that TensorRT accepts (scopes pointwise
and all), or the integer graph ONNX Runtime's CPU kernels run (scope integer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from earmark.export.inputs import INPUT_NAME
from earmark.export.qdq import store_float_conv_weights_int8


class _Batches(CalibrationDataReader):
    """Feeds calibration features in the model's batch size."""

    def __init__(self, inputs: np.ndarray, batch: int | None):
        step = batch or 1
        self._chunks = iter([inputs[i:i + step] for i in range(0, len(inputs) - step + 1, step)])

    def get_next(self):
        chunk = next(self._chunks, None)
        return None if chunk is None else {INPUT_NAME: chunk}


def _attribute(node: onnx.NodeProto, name: str, default: object) -> object:
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def spatial_convs(model: onnx.ModelProto) -> list[str]:
    """Names of the Conv nodes with a kernel larger than 1x1 (depthwise and stem convs)."""
    return [n.name for n in model.graph.node if n.op_type == "Conv" and any(k > 1 for k in _attribute(n, "kernel_shape", []))]


SLOWER_IN_UINT8 = ("MaxPool", "Resize")  # ONNX Runtime's uint8 kernels took 3-10x their float time (docs/export.md)


def convs_on_a_line(model: onnx.ModelProto) -> list[str]:
    """Names of the Conv nodes whose input has one spatial axis of size 1 (tfsepnet's 1x1 convs after a block's
    frequency or time mean): products of a row, too small for INT8 to pay for the layout changes around them."""
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and 1 in shapes.get(n.input[0], [0, 0, 0, 0])[2:]]


def one_initializer_per_reader(model: onnx.ModelProto) -> None:
    """Give every node its own copy of each constant it shares (the exporter deduplicates equal constants) and a name:
    onnxruntime.quantization puts one DequantizeLinear on a shared weight, and ONNX Runtime fuses a DequantizeLinear
    into a QLinearConv only when that conv is its one reader (two such convs of tfsepnet40 stayed float, ~2x its time)."""
    initializers, seen = {t.name: t for t in model.graph.initializer}, set()
    for i, node in enumerate(model.graph.node):
        node.name = node.name or f"n{i}"
        for j, name in enumerate(node.input):
            if name in initializers and name in seen:
                copy = onnx.TensorProto()
                copy.CopyFrom(initializers[name])
                copy.name = node.input[j] = f"{name}_{i}_{j}"
                model.graph.initializer.append(copy)
            seen.add(name)


def quantize_integer(prepared: Path, quantized: Path, calibration: CalibrationDataReader) -> None:
    """The integer graph: unsigned INT8 activations (asymmetric), signed per-channel INT8 weights, INT32 biases, every op
    ONNX Runtime has a faster integer kernel for (QLinearConv for the 1x1 convs over whole feature maps, QLinearAdd,
    QLinearConcat, QLinearMul, u8s8 QGemm / QLinearMatMul); the spatial convs, max-pools and resizes stay float (their
    uint8 kernels took 3-10x their float time on tfsepnet's small tensors), and so do the 1x1 convs of a row
    (``convs_on_a_line``), each of which cost a QuantizeLinear and two Transposes for a product of a few KB
    (docs/export.md). Those float convs store their weights as INT8 too (weight-only, folded at load)."""
    model = onnx.load(str(prepared))
    one_initializer_per_reader(model)
    onnx.save(model, str(prepared))
    float_nodes = spatial_convs(model) + convs_on_a_line(model) + [n.name for n in model.graph.node if n.op_type in SLOWER_IN_UINT8]
    quantize_static(
        str(prepared), str(quantized), calibration, quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=float_nodes,
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )
    model = onnx.load(str(quantized))
    store_float_conv_weights_int8(model)
    onnx.save(model, str(quantized))


def quantize_static_int8(fp32_path: Path, calibration: np.ndarray, batch: int | None, scope: str = "pointwise") -> onnx.ModelProto:
    """Quantize conv and linear layers to signed INT8 with zero points 0 (QDQ format), per-channel weights.

    ``scope="pointwise"`` leaves the spatial convs in float (x86 ONNX Runtime runs INT8 depthwise convs slower than float);
    ``scope="integer"`` is ``quantize_integer``'s graph instead. Weights use 7 of their 8 bits (``reduce_range``): on an
    x86 CPU without VNNI, ONNX Runtime's integer kernels add pairs of u8 x s8 products in 16 bits, which full-range
    weights overflow (a fine-tuned tfsepnet40 on an AVX2-only CPU: max |diff| 0.51 against PyTorch, passing with 7 bits).
    """
    prepared = fp32_path.with_name("prepared.onnx")
    quantized = fp32_path.with_name("int8.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    if scope == "integer":
        quantize_integer(prepared, quantized, _Batches(calibration, batch))
        return onnx.load(str(quantized))
    excluded = spatial_convs(onnx.load(str(prepared))) if scope == "pointwise" else []
    quantize_static(
        str(prepared), str(quantized), _Batches(calibration, batch),
        quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        per_channel=True, reduce_range=True, op_types_to_quantize=["Conv", "MatMul", "Gemm"], nodes_to_exclude=excluded,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},  # TensorRT: INT8 Q/DQ only
    )
    return onnx.load(str(quantized))
