"""DCASE-style complexity: torchinfo MACs for one second of audio, parameter bytes per dtype, frontend FLOPs apart."""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass

import torch
import torchinfo
from torch import nn

from earmark.audio.spec import FrontendSpec, get_frontend

MAX_PARAM_BYTES = 128_000
MAX_MACS = 30_000_000
BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class Complexity:
    """What the DCASE low-complexity rules count, and the frontend's cost beside it."""

    params: int
    macs: int
    input_shape: tuple[int, ...]
    frontend_flops: int

    def param_bytes(self, dtype: str) -> int:
        return self.params * BYTES_PER_PARAM[dtype]

    def fits(self, dtype: str) -> bool:
        """Within 128,000 bytes of parameters and 30 M MACs per second of audio."""
        return self.param_bytes(dtype) <= MAX_PARAM_BYTES and self.macs <= MAX_MACS


def frontend_flops(spec: FrontendSpec, seconds: float = 1.0) -> int:
    """FLOPs of the log-mel for ``seconds`` of audio: real FFT (2.5 N log2 N), power, mel matmul, log, normalise."""
    frames = spec.num_frames(int(seconds * spec.sample_rate))
    bins = spec.n_fft // 2 + 1
    per_frame = 2.5 * spec.n_fft * math.log2(spec.n_fft) + spec.n_fft + 3 * bins + 2 * spec.n_mels * bins + 3 * spec.n_mels
    return int(frames * per_frame)


class _Logits(nn.Module):
    """The model with its ModelOutput reduced to tensors: torchinfo sizes every module's output and knows no dataclass,
    so the model's own ``forward`` is called directly (no hook on it); its layers are counted as usual."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.model.forward(x)
        return [t for t in (out.clip_logits, out.frame_logits) if t is not None]


def count(model: nn.Module, n_mels: int, frames: int, frontend: str | FrontendSpec | None = None) -> Complexity:
    """Parameters and MACs (torchinfo's total_mult_adds) of the float model on one (1, 1, n_mels, frames) input."""
    was_training = model.training
    model.eval()
    stats = torchinfo.summary(_Logits(model), input_size=(1, 1, n_mels, frames), verbose=0, device="cpu")
    model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    spec = get_frontend(frontend or getattr(model, "frontend", "tfsepnet"))
    return Complexity(params, int(stats.total_mult_adds), (1, 1, n_mels, frames), frontend_flops(spec))


def one_second_input(model: nn.Module) -> tuple[int, int]:
    """(n_mels, frames) of one second of audio through the model's frontend."""
    spec = get_frontend(getattr(model, "frontend", "tfsepnet"))
    return spec.n_mels, spec.num_frames(spec.sample_rate)


def format_report(name: str, c: Complexity) -> str:
    """A table: parameters, MACs, bytes per dtype and the verdict against the DCASE limits."""
    lines = [f"{name}: {c.params:,} parameters, {c.macs:,} MACs per second of audio (input {c.input_shape})",
             f"  frontend (not counted by DCASE): {c.frontend_flops:,} FLOPs per second",
             f"  {'dtype':<6} {'bytes':>10}  verdict (<= {MAX_PARAM_BYTES:,} B and <= {MAX_MACS:,} MACs)"]
    for dtype in BYTES_PER_PARAM:
        lines.append(f"  {dtype:<6} {c.param_bytes(dtype):>10,}  {'fits' if c.fits(dtype) else 'does not fit'}")
    return "\n".join(lines)


def stored_bytes(path: str | os.PathLike) -> dict[str, int]:
    """Bytes of the constants an ONNX file stores (initializers and Constant nodes), per numpy dtype name."""
    import onnx
    from onnx import helper, numpy_helper

    graph = onnx.load(str(path)).graph
    tensors = list(graph.initializer) + [n.attribute[0].t for n in graph.node
                                         if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"]
    out: Counter[str] = Counter()
    for tensor in tensors:
        out[helper.tensor_dtype_to_np_dtype(tensor.data_type).name] += numpy_helper.to_array(tensor).nbytes
    return dict(out)


def format_onnx_report(path: str | os.PathLike) -> str:
    """What an exported file actually stores, per dtype, against the DCASE parameter-memory limit (int64 shape constants apart)."""
    stored = stored_bytes(path)
    parameters = sum(v for k, v in stored.items() if k != "int64")
    lines = [f"{path}: {os.path.getsize(path):,} bytes on disk; constants stored per dtype:"]
    lines += [f"  {dtype:<8} {count:>10,}" + ("  (shape constants, not parameters)" if dtype == "int64" else "")
              for dtype, count in sorted(stored.items())]
    verdict = "fits" if parameters <= MAX_PARAM_BYTES else "does not fit"
    lines.append(f"  parameter memory {parameters:,} bytes: {verdict} the DCASE limit of {MAX_PARAM_BYTES:,} bytes")
    return "\n".join(lines)
