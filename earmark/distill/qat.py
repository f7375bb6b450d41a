"""Quantization-aware training with NNCF: symmetric signed INT8 (zero points 0) that exports as ONNX Q/DQ.

ResNorm / AdaResNorm normalise with batch statistics of the input and cannot be folded: they stay float
(NNCF ignored scope). Activation quantizers are made signed so every Q/DQ is INT8 with zero point 0,
the only form TensorRT's explicit quantization accepts.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Iterable

import torch
from torch import nn

from earmark.engine.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from earmark.students import AdaResNorm, ResNorm, build_student

FLOAT_MODULES = (ResNorm, AdaResNorm)


def _nncf():
    warnings.filterwarnings("ignore", module="nncf")
    import nncf

    return nncf


def _quantizers(model: nn.Module) -> list[nn.Module]:
    from nncf.torch.quantization.layers import BaseQuantizer

    return [m for m in model.modules() if isinstance(m, BaseQuantizer)]


def float_scope(model: nn.Module) -> list[str]:
    """NNCF node-name patterns of the modules that stay in float."""
    return [re.escape(name.replace(".", "/")) + "/.*" for name, m in model.named_modules() if isinstance(m, FLOAT_MODULES)]


def _signed_qdq(model: nn.Module) -> nn.Module:
    from nncf.torch.quantization.layers import QuantizerExportMode

    for quantizer in _quantizers(model):
        quantizer.signed = True
        quantizer.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    return model


def quantize(model: nn.Module, calibration: Iterable[torch.Tensor], subset_size: int = 300) -> nn.Module:
    """Insert INT8 fake quantizers calibrated on feature batches (B, 1, n_mels, frames); returns the model to fine-tune."""
    nncf = _nncf()
    model = model.eval()
    if isinstance(model, nn.Sequential):
        raise ValueError("NNCF cannot quantize a bare nn.Sequential; wrap it in a module with its own forward.")
    batches = list(calibration)
    quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=min(subset_size, sum(len(b) for b in batches)),
                              preset=nncf.QuantizationPreset.PERFORMANCE,
                              ignored_scope=nncf.IgnoredScope(patterns=float_scope(model), validate=False))
    return _signed_qdq(quantized)


def save_qat_checkpoint(path: str | os.PathLike, model: nn.Module, meta: CheckpointMeta) -> None:
    """Weights with their quantizer states, and the NNCF config (JSON) in ``meta.extra["quantization"]``."""
    nncf = _nncf()
    meta.extra["quantization"] = {"backend": "nncf", "scheme": "int8 symmetric signed", "config": nncf.torch.get_config(model)}
    save_checkpoint(path, model.state_dict(), meta)


def load_qat_student(path: str | os.PathLike) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild a QAT student: the float architecture, NNCF's quantizers from the config, then the weights."""
    nncf = _nncf()
    state, meta = load_checkpoint(path)
    if "quantization" not in meta.extra:
        raise ValueError(f"{path} is a float checkpoint; quantize it with `earmark distill --qat` or export with --int8 --calib.")
    model = nncf.torch.load_from_config(build_student(meta).eval(), meta.extra["quantization"]["config"])
    model.load_state_dict(state)
    return _signed_qdq(model).eval(), meta


def export_ready(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The quantized model set to trace as QuantizeLinear/DequantizeLinear pairs (torch.onnx.export, dynamo=False)."""
    _signed_qdq(model)
    with torch.no_grad():
        model(example)
    return model.eval()
