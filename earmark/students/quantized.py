"""Quantized students (NNCF): BatchNorm folded into the convs, symmetric signed INT8 fake quantizers, and their checkpoint format.

The format belongs here, beside the float students, so that export rebuilds a QAT checkpoint without
importing distill (which owns only the QAT training loop). BatchNorm is folded before the quantizers are
inserted, so QAT learns the very weights the exported file stores as INT8. ResNorm / AdaResNorm normalise
with the statistics of their input and stay float. Every Q/DQ is INT8 with zero point 0, the only form
TensorRT's explicit quantization accepts.

Scopes: ``all`` quantizes every conv and linear layer (TensorRT, NPUs); ``pointwise`` leaves convs with a
spatial kernel (depthwise and stem) in float, for CPU targets where ONNX Runtime's INT8 depthwise kernels
are slower than float ones, and quantizes only the pointwise convs' inputs and weights: NNCF would also put
activation quantizers on the inputs of means, residual adds, max-pools and concats (55 of 78 Q/DQ pairs in
tfsepnet40), which a CPU runs as extra float work (TensorRT, in scope ``all``, fuses them). The spatial convs' weights
are still stored as INT8 in ``pointwise``: QAT trains them through a weight-only fake quantizer (per tensor by default),
so the file holds one byte per weight while their inputs and outputs stay float.

``weights`` quantizes no activation at all: every conv weight goes through the weight-only fake quantizer (per output
channel for 1x1 convs, per tensor for spatial ones) and NNCF is not used. On a CPU its file computes in float (ONNX
Runtime folds the INT8 weights at load) in the float export's graph (``runtime_layout`` regroups its INT8 weights), at
fp32's speed, where pointwise's activation Q/DQ pairs cost more and buy nothing: ONNX Runtime has no INT8 kernel for a
conv with a float bias and no output quantizer.

Format 2 (``quantization["version"]``): every conv bias is trained on the float16 grid (straight-through), so a
pointwise export stores it in half the bytes and computes exactly what QAT trained, and channel shuffles after a
transition conv are folded into it before quantization. Format-1 checkpoints still load as they were written.
"""

from __future__ import annotations

import copy
import os
import re
import warnings
from contextlib import contextmanager
from typing import Iterable, Iterator, Literal

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from earmark.engine.checkpoint import CheckpointMeta, save_checkpoint
from earmark.students.checkpoint import build_student
from earmark.students.tfsepnet import AdaResNorm, ResNorm, fold_channel_shuffles

Scope = Literal["all", "pointwise", "weights"]
SCOPES: tuple[str, ...] = ("all", "pointwise", "weights")
FLOAT_MODULES = (ResNorm, AdaResNorm)
FLOAT_OPS_POINTWISE = ("add", "mean", "max_pool2d", "cat", "mul")  # NNCF op types whose inputs stay float in scope pointwise
FORMAT = "nncf-int8-symmetric"  # checkpoints written by earlier versions (BatchNorm unfolded) lack this key
WEIGHT_ONLY_FORMAT = "int8-symmetric-weight-only"  # scope weights: earmark's own weight quantizers, no NNCF
FORMAT_VERSION = 2  # 2: shuffles folded, float16-grid biases, INT8 spatial weights in scope pointwise (absent: 1)
SpatialWeights = Literal["per-channel", "per-tensor"]
SPATIAL_WEIGHTS: SpatialWeights = "per-tensor"  # how scope pointwise stores the spatial convs' weights (measured: docs/export.md)
EXTENSION_TIMEOUT_S = 900  # NNCF compiles a C++ extension on first use; its own 60 s limit is too short on 2 busy cores


def cpu_default_scope(model: nn.Module) -> Scope:
    """The INT8 scope for CPU targets when none is asked for: ``weights`` for a student whose weights are mostly convs
    (on ONNX Runtime no integer graph beats its fp32 graph yet: docs/export.md), ``pointwise`` for one made of linear
    layers (a ViT), which scope ``weights`` would leave float."""
    conv, linear = (sum(m.weight.numel() for m in model.modules() if isinstance(m, kind)) for kind in (nn.Conv2d, nn.Linear))
    return "weights" if conv >= linear else "pointwise"


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a conv in an ``nn.Sequential`` into that conv (in place, eval statistics).

    ``W' = W * gamma / sqrt(var + eps)`` per output channel and ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``.
    """
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for conv_name, bn_name in zip(names, names[1:]):
            conv, bn = module._modules[conv_name], module._modules[bn_name]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                fused = fuse_conv_bn_eval(conv.eval(), bn.eval())
                fused.bias.requires_grad_(conv.weight.requires_grad)  # torch copies it from the bias-free conv's zeros: frozen
                module._modules[conv_name] = fused
                module._modules[bn_name] = nn.Identity()
    return model


def _float16_grid(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to the nearest float16 value, with a straight-through gradient."""
    return x + (x.detach().half().float() - x.detach())


class QuantizedStorageConv2d(nn.Conv2d):
    """A conv that trains on the grids its export stores: the bias on the float16 grid and, with ``spatial_weights``, the
    weight through a weight-only symmetric INT8 fake quantizer (scale ``max |w| / 127`` per output channel or per tensor,
    straight-through gradient); NNCF quantizes nothing else of such a conv (a spatial conv in scope pointwise). ``bake()``
    sets the parameters to their grid points and freezes the scale, so that the export traces constants.
    """

    spatial_weights: SpatialWeights | None = None
    frozen_scale: torch.Tensor | None = None
    float16_bias = False  # switched on once NNCF has placed its quantizers (its bias correction wants a constant bias)
    baked = False

    @classmethod
    def wrap(cls, conv: nn.Conv2d, spatial_weights: SpatialWeights | None) -> "QuantizedStorageConv2d":
        conv.__class__ = cls  # same parameters and state-dict keys
        conv.spatial_weights = spatial_weights
        return conv

    @classmethod
    def on_grid(cls, conv: nn.Conv2d, scales: torch.Tensor) -> "QuantizedStorageConv2d":
        """``conv``, whose weights are points of the INT8 grid with one scale per output channel ``scales``, as a baked
        weight-only conv (``runtime_layout`` regroups a quantized student's convs so)."""
        conv = cls.wrap(conv, "per-channel")
        conv.frozen_scale, conv.baked = scales.detach().clone(), True
        return conv

    def channel_scales(self) -> torch.Tensor | None:
        """The scale of each output channel's INT8 weight grid (a per-tensor scale repeated); None for a float weight."""
        if self.spatial_weights is None:
            return None
        return torch.broadcast_to(self.weight_scale(), (self.out_channels,))

    def weight_scale(self) -> torch.Tensor:
        if self.frozen_scale is not None:
            return self.frozen_scale
        absmax = self.weight.detach().abs()
        absmax = absmax.amax(dim=(1, 2, 3)) if self.spatial_weights == "per-channel" else absmax.amax()
        return (absmax / 127).clamp_min(torch.finfo(torch.float32).tiny)

    def stored_weight(self) -> torch.Tensor:
        if self.spatial_weights is None:
            return self.weight
        scale = self.weight_scale()
        zero = torch.zeros(scale.shape, dtype=torch.int32, device=scale.device)
        if self.spatial_weights == "per-channel":
            return torch.fake_quantize_per_channel_affine(self.weight, scale, zero, 0, -128, 127)
        return torch.fake_quantize_per_tensor_affine(self.weight, scale, zero, -128, 127)

    def bake(self) -> None:
        with torch.no_grad():
            self.weight.copy_(self.stored_weight())
            self.frozen_scale = None if self.spatial_weights is None else self.weight_scale()
            if self.bias is not None:
                self.bias.copy_(self.bias.half().float())
        self.baked = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = _float16_grid(self.bias) if self.float16_bias and not self.baked and self.bias is not None else self.bias
        return self._conv_forward(x, self.stored_weight(), bias)


def prepare_storage(model: nn.Module, scope: Scope, spatial_weights: SpatialWeights | None) -> nn.Module:
    """Format 2, before NNCF (a copy): shuffles and BatchNorm folded into the convs, every conv a ``QuantizedStorageConv2d``
    (spatial ones with weight-only INT8 as ``spatial_weights`` says in scopes pointwise and weights; in weights the 1x1
    ones per channel too)."""
    model = fold_batchnorm(fold_channel_shuffles(model))
    for module in model.modules():
        if type(module) is nn.Conv2d:
            spatial = module.kernel_size != (1, 1)
            weights = spatial_weights if spatial and scope != "all" else "per-channel" if scope == "weights" else None
            QuantizedStorageConv2d.wrap(module, weights)
    return model


def float_scope(model: nn.Module, scope: Scope) -> list[str]:
    """NNCF node-name patterns of the modules that stay float: the ResNorms, and in ``pointwise`` scope the spatial convs."""
    if scope not in SCOPES:
        raise ValueError(f"unknown INT8 scope {scope!r}; use 'all' (TensorRT, NPUs), 'pointwise' or 'weights' (CPU).")
    kept = [name for name, m in model.named_modules() if isinstance(m, FLOAT_MODULES)
            or (scope == "pointwise" and isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))]
    return [re.escape(name.replace(".", "/")) + "/.*" for name in kept]


@contextmanager
def _nncf() -> Iterator[object]:
    """NNCF, with a generous limit for the extension build and one sentence if it still runs out."""
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", str(EXTENSION_TIMEOUT_S))
    warnings.filterwarnings("ignore", module="nncf")
    import nncf
    from nncf.torch.extensions import ExtensionLoaderTimeoutException

    try:
        yield nncf
    except ExtensionLoaderTimeoutException as err:
        raise RuntimeError(
            f"NNCF's C++ quantization extension did not build within NNCF_EXTENSION_LOAD_TIMEOUT="
            f"{os.environ['NNCF_EXTENSION_LOAD_TIMEOUT']} s (the machine is busy or a stale lock is left); "
            "rerun with a larger value, e.g. NNCF_EXTENSION_LOAD_TIMEOUT=1800, or 0 for no limit."
        ) from err


def _quantizers(model: nn.Module) -> list[nn.Module]:
    from nncf.torch.quantization.layers import BaseQuantizer

    return [m for m in model.modules() if isinstance(m, BaseQuantizer)]


def _signed_qdq(model: nn.Module) -> nn.Module:
    from nncf.torch.quantization.layers import QuantizerExportMode

    for quantizer in _quantizers(model):
        quantizer.signed = True
        quantizer.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)  # not OpenVINO's FakeQuantize
    return model


def quantize(model: nn.Module, calibration: Iterable[torch.Tensor], scope: Scope = "pointwise", subset_size: int = 300,
             spatial_weights: SpatialWeights = SPATIAL_WEIGHTS) -> nn.Module:
    """Fold shuffles and BatchNorm, then insert INT8 fake quantizers calibrated on feature batches (B, 1, n_mels, frames)."""
    if isinstance(model, nn.Sequential):
        raise ValueError("NNCF cannot quantize a bare nn.Sequential; wrap it in a module with its own forward.")
    float_scope(model, scope)  # refuses an unknown scope
    model = prepare_storage(copy.deepcopy(model).eval(), scope, spatial_weights)  # the caller's float model stays as it was
    if scope == "weights":
        return _float16_biases(model)
    ignored = float_scope(model, scope)
    types = list(FLOAT_OPS_POINTWISE) if scope == "pointwise" else []
    batches = list(calibration)
    with _nncf() as nncf:
        quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=min(subset_size, sum(len(b) for b in batches)),
                                  preset=nncf.QuantizationPreset.PERFORMANCE,
                                  ignored_scope=nncf.IgnoredScope(patterns=ignored, types=types, validate=False))
    return _float16_biases(_signed_qdq(quantized))


def _float16_biases(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, QuantizedStorageConv2d):
            module.float16_bias = True
    return model


def save_quantized_checkpoint(path: str | os.PathLike, model: nn.Module, meta: CheckpointMeta, scope: Scope) -> None:
    """Weights with their quantizer states; the NNCF config, the scope ``quantize`` used and the format in ``meta.extra["quantization"]``."""
    storage = [m for m in model.modules() if isinstance(m, QuantizedStorageConv2d)]
    config = None
    if scope != "weights":
        with _nncf() as nncf:
            config = nncf.torch.get_config(model)
    meta.extra["quantization"] = {"backend": "nncf" if config else "earmark", "format": FORMAT if config else WEIGHT_ONLY_FORMAT,
                                  "scheme": "int8 symmetric signed, per-channel weights", "scope": scope, "config": config}
    if storage:
        spatial = [m.spatial_weights for m in storage if m.spatial_weights and m.kernel_size != (1, 1)]
        meta.extra["quantization"].update(version=FORMAT_VERSION, spatial_weights=spatial[0] if spatial else None)
    save_checkpoint(path, model.state_dict(), meta)


def build_quantized_student(meta: CheckpointMeta) -> nn.Module:
    """The (untrained) QAT student a quantized checkpoint describes: the float architecture (BatchNorm folded), NNCF's
    signed quantizers from the config; ``engine.load_model`` then loads the weights (quantizer states included)."""
    quantization = meta.extra["quantization"]
    model = build_student(meta).eval()
    if quantization.get("version", 1) >= 2:
        model = prepare_storage(model, quantization["scope"], quantization["spatial_weights"])
    elif quantization.get("format") == FORMAT:
        model = fold_batchnorm(model)
    if quantization["scope"] != "weights":
        with _nncf() as nncf:
            model = _signed_qdq(nncf.torch.load_from_config(model, quantization["config"]))
    return _float16_biases(model)


WEIGHT_HOOK = re.compile(r".*pre_hooks\.(.+)/(?:conv[12]d|linear)/\d+__1\.\d+")  # a quantizer on input 1 (the weight)


def _bake_weights(model: nn.Module) -> None:
    """Set every quantized weight to its fake-quantized value (a point of its INT8 grid).

    NNCF's fake quantization and ONNX's QuantizeLinear can round a weight one level apart; baked, both give the
    grid point QAT trained with, and the exported INT8 initializer holds exactly it.
    """
    from nncf.torch.quantization.layers import BaseQuantizer

    for name, quantizer in model.named_modules():
        match = WEIGHT_HOOK.fullmatch(name)
        if match and isinstance(quantizer, BaseQuantizer):
            weight = model.get_submodule(match[1].replace("/", ".")).weight
            weight.data = quantizer.quantize(weight.data)


def export_ready(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The quantized model, weights baked to their INT8 grid, set to trace as QuantizeLinear/DequantizeLinear pairs (dynamo=False)."""
    with _nncf():
        _signed_qdq(model)
        with torch.no_grad():
            model(example)
            _bake_weights(model)
            for module in model.modules():
                if isinstance(module, QuantizedStorageConv2d):
                    module.bake()
    return model.eval()
