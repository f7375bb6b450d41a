"""A causal student as a stateful ONNX file: hops of frames plus the state in, frame scores plus the next state out.

The runtime feeds each call the state the previous call returned (zeros at the start), so it never recomputes a
window; parity streams test signals through ONNX Runtime, one and several hops a call, against the PyTorch model on
each whole signal.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from earmark.audio.metadata import ModelMetadata
from earmark.export.benchmark import session
from earmark.export.inputs import feature_batch, test_signals
from earmark.export.loading import LoadedModel, ScoresHead
from earmark.export.onnx_export import (OPSET, TOLERANCE, ExportResult, Parity, attach_metadata, build_metadata, measure_latency,
                                        store_qat)
from earmark.export.qdq import compact

PARITY_SECONDS = 4.0  # long enough for the state to matter: 64 hops of 62.5 ms
CHUNKS = (1, 3, 1, 7, 2)  # hops a call in the parity stream, in turn: one at a time, and as a block of audio completes them


class StreamStep(nn.Module):
    """(features of one hop, *state) -> (frame probabilities, their maximum as the hop's clip score, *next state)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        frame_logits, new_state = self.model.stream(features, *state)
        frame = torch.sigmoid(frame_logits)
        return (frame, frame.amax(dim=1), *new_state)


def stateful_metadata(metadata: ModelMetadata, model: nn.Module) -> ModelMetadata:
    """Windowed metadata made stateful for a causal ``model``: a window is one hop of its ``step_frames``, and its state
    tensors are named with their shapes."""
    hop, state = model.step_frames * metadata.frontend.hop_seconds, model.initial_state(1)
    return dataclasses.replace(metadata, window_seconds=hop, hop_seconds=hop, input_frames=model.step_frames, stateful=True,
                               state_inputs=tuple(f"state_in_{i}" for i in range(len(state))),
                               state_outputs=tuple(f"state_out_{i}" for i in range(len(state))),
                               state_shapes=tuple(tuple(s.shape) for s in state))


def trace_stateful(model: nn.Module, metadata: ModelMetadata, path: Path) -> onnx.ModelProto:
    """Trace the causal ``model`` into an ONNX graph with the metadata's input, output and state names; it takes any
    whole number of hops a call (the runtime runs every hop a block of audio completes in one call)."""
    example = torch.zeros(1, 1, metadata.frontend.n_mels, metadata.input_frames)
    state = model.initial_state(1)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Converting a tensor to a Python", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", ".*variable length with GRU", UserWarning)  # batch 1, h0 is an input
        torch.onnx.export(StreamStep(model.eval()), (example, *state), str(path), dynamo=False, opset_version=17,
                          input_names=[metadata.input_name, *metadata.state_inputs],
                          output_names=[*metadata.outputs.values(), *metadata.state_outputs],
                          dynamic_axes={metadata.input_name: {3: "frames"}, metadata.outputs["frame"]: {1: "hops"}})
    return onnx.load(str(path))


def stream_scores(path: str | os.PathLike, metadata: ModelMetadata, features: np.ndarray, chunks: tuple[int, ...] = CHUNKS) -> np.ndarray:
    """Frame probabilities (T', C) of (1, n_mels, T) features streamed through ONNX Runtime from zero state, ``chunks``
    hops a call in turn."""
    sess = session(path)
    state = {name: np.zeros(shape, np.float32) for name, shape in zip(metadata.state_inputs, metadata.state_shapes)}
    frame_output = metadata.outputs["frame"]
    scores, hop, start = [], metadata.input_frames, 0
    for hops in itertools.cycle(chunks):
        end = min(start + hops * hop, features.shape[-1] // hop * hop)
        if end <= start:
            return np.concatenate(scores)
        out = sess.run([frame_output, *metadata.state_outputs], {metadata.input_name: features[None, :, :, start:end], **state})
        scores.append(out[0][0])
        state, start = dict(zip(metadata.state_inputs, out[1:])), end


def offline_scores(model: nn.Module, features: np.ndarray) -> np.ndarray:
    """Frame probabilities (T', C) of the PyTorch model on (1, n_mels, T) features, the whole signal at once."""
    with torch.no_grad():
        return torch.sigmoid(model.eval()(torch.from_numpy(features[None])).frame_logits[0]).numpy()


def parity_inputs(loaded: LoadedModel, count: int = 6) -> np.ndarray:
    """(N, 1, n_mels, T) features of the exporter's test signals, ``PARITY_SECONDS`` long."""
    spec = loaded.frontend
    frames = spec.num_frames(round(PARITY_SECONDS * spec.sample_rate))
    return feature_batch(spec, frames, test_signals(spec.sample_rate, PARITY_SECONDS, count=count))


def export_stateful(loaded: LoadedModel, out: Path, precision: str, min_agreement: float | None) -> ExportResult:
    """Write the stateful ONNX file of a causal student (fp32, or INT8 weights from weight-only QAT) after streaming parity
    against the PyTorch model (QAT: fake-quantized); nothing is written when a gate fails."""
    if loaded.objective != "detect":
        raise ValueError(f"{loaded.meta.model} is a causal frame model trained to {loaded.objective}; the stateful export "
                         "streams event scores: distil it with --objective detect.")
    scope = loaded.meta.extra["quantization"]["scope"] if loaded.quantized else None
    if scope not in (None, "weights") or (not loaded.quantized and precision != "fp32"):
        raise ValueError(f"{loaded.meta.model} is causal: it exports stateful in fp32 from its float checkpoint, or in INT8 from "
                         "weight-only QAT (`earmark distill --qat --int8-scope weights`), whose modules stream as they train.")
    inputs = parity_inputs(loaded)
    model = loaded.model.eval()
    if loaded.quantized:
        from earmark.students import export_ready

        model, precision = export_ready(model, torch.from_numpy(inputs[:1])), "int8"
    head = ScoresHead(model, "frame", "detect")
    metadata = stateful_metadata(build_metadata(loaded, head, precision), model)
    partial = out.with_name(out.name + ".partial")
    with tempfile.TemporaryDirectory() as tmp:
        graph = trace_stateful(model, metadata, Path(tmp) / "model.onnx")
    if loaded.quantized:
        metadata = dataclasses.replace(metadata, quantization=store_qat(graph, scope))
    compact(graph)
    attach_metadata(graph, metadata)
    onnx.checker.check_model(graph)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(partial))
    parity = stream_parity(partial, metadata, model, inputs)
    max_diff, default_agreement = TOLERANCE[precision]
    gates = parity.gates(max_diff, default_agreement if min_agreement is None else min_agreement)
    if not all(g.passed for g in gates):
        partial.unlink()
        raise RuntimeError(f"ONNX Runtime streaming disagrees with PyTorch on whole signals ({precision}); nothing was written:\n"
                           + "\n".join(f"  {g}" for g in gates) + "\nReport this with the checkpoint.")
    os.replace(partial, out)
    hop = np.zeros((1, 1, metadata.frontend.n_mels, metadata.input_frames), np.float32)
    state = {name: np.zeros(shape, np.float32) for name, shape in zip(metadata.state_inputs, metadata.state_shapes)}
    return ExportResult(out, out.stat().st_size, precision, OPSET, parity, measure_latency(out, hop, state=state), metadata, gates=gates)


def stream_parity(path: Path, metadata: ModelMetadata, model: nn.Module, inputs: np.ndarray) -> Parity:
    """Each input streamed (ONNX Runtime, ``CHUNKS`` hops a call) against the model on the whole input (PyTorch): max |diff| of the
    frame probabilities and agreement of the decisions at the metadata's thresholds."""
    thresholds = np.array([metadata.threshold(label) for label in metadata.labels], np.float32)
    diffs, agree = [], []
    for features in inputs:
        streamed, whole = stream_scores(path, metadata, features), offline_scores(model, features)
        whole = whole[:len(streamed)]
        diffs.append(float(np.abs(streamed - whole).max()))
        agree.append(((streamed >= thresholds) == (whole >= thresholds)).reshape(-1))
    finite = bool(np.isfinite(diffs).all())
    return Parity(max(diffs), float(np.concatenate(agree).mean()), len(inputs), finite, multi_label=True)
