"""Post-training static INT8 quantization with ONNX Runtime: symmetric Q/DQ that TensorRT accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from earmark.export.onnx_export import INPUT_NAME


class _Batches(CalibrationDataReader):
    """Feeds calibration features in the model's batch size."""

    def __init__(self, inputs: np.ndarray, batch: int | None):
        step = batch or 1
        self._chunks = iter([inputs[i:i + step] for i in range(0, len(inputs) - step + 1, step)])

    def get_next(self):
        chunk = next(self._chunks, None)
        return None if chunk is None else {INPUT_NAME: chunk}


def quantize_static_int8(fp32_path: Path, calibration: np.ndarray, batch: int | None) -> onnx.ModelProto:
    """Quantize weights and activations to signed INT8 with zero points 0 (QDQ format), per-channel weights."""
    prepared = fp32_path.with_name("prepared.onnx")
    quantized = fp32_path.with_name("int8.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared), str(quantized), _Batches(calibration, batch),
        quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},  # TensorRT: INT8 Q/DQ only
    )
    return onnx.load(str(quantized))
