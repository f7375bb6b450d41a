"""Checkpoint -> one deployable .onnx (DESIGN artifact 4): fp32, fp16 or int8 Q/DQ, with metadata and parity."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import torch

from earmark.audio.metadata import METADATA_KEY, ModelMetadata
from earmark.export.benchmark import session
from earmark.export.inputs import feature_batch, manifest_features, test_signals
from earmark.export.loading import LoadedModel, ScoresHead, load_model

Precision = Literal["fp32", "fp16", "int8"]
OPSET = 17
INPUT_NAME = "features"
# Parity tolerances on probabilities against the PyTorch model (max abs difference, top-1 agreement).
# INT8 is gated on the difference only: near-tied classes of a weak model flip under any quantization,
# so its top-1 agreement is reported, and its accuracy too when the calibration set has labels.
TOLERANCE: dict[str, tuple[float, float]] = {"fp32": (1e-4, 1.0), "fp16": (1e-2, 0.95), "int8": (0.15, 0.0)}


@dataclass
class Parity:
    """How closely ONNX Runtime reproduces PyTorch on real inputs."""

    max_abs_diff: float
    top1_agreement: float
    inputs: int


@dataclass
class ExportResult:
    """One written model and the figures measured on it."""

    path: Path
    bytes: int
    precision: str
    opset: int
    parity: Parity
    latency_ms: float
    metadata: ModelMetadata
    accuracy: dict[str, float] | None = None


def build_metadata(loaded: LoadedModel, head: ScoresHead, precision: str) -> ModelMetadata:
    """The runtime's view of the model, from the checkpoint's metadata."""
    extra = loaded.meta.extra
    frame_hop = float(extra.get("frame_hop_seconds", getattr(loaded.model, "frame_hop_seconds", 0.0)))
    roles = ["frame", "clip"] if head.task == "frame" else ["clip"]
    return ModelMetadata(
        labels=tuple(loaded.meta.labels),
        task=loaded.meta.task,
        frontend=loaded.frontend,
        window_seconds=loaded.window_seconds,
        hop_seconds=loaded.hop_seconds,
        input_name=INPUT_NAME,
        input_frames=loaded.input_frames,
        outputs=dict(zip(roles, head.output_names)),
        activation="sigmoid" if head.multi_label else "softmax",
        thresholds={k: float(v) for k, v in extra.get("thresholds", {}).items()},
        default_threshold=float(extra.get("default_threshold", 0.5)),
        frame_hop_seconds=frame_hop if head.task == "frame" else 0.0,
        precision=precision,
        source_checkpoint_sha256=loaded.sha256,
        model_name=loaded.meta.model,
    )


def attach_metadata(model: onnx.ModelProto, metadata: ModelMetadata) -> None:
    """Store the metadata JSON under metadata_props["earmark"], replacing an older entry."""
    for prop in [p for p in model.metadata_props if p.key == METADATA_KEY]:
        model.metadata_props.remove(prop)
    model.metadata_props.add(key=METADATA_KEY, value=metadata.to_json())


def sort_nodes(graph: onnx.GraphProto) -> None:
    """Order nodes topologically (the fp16 converter appends its input casts at the end)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        progress = [n for n in pending if all(name in ready for name in n.input)]
        if not progress:
            raise RuntimeError("the ONNX graph has a cycle or an undefined input; this is a bug in the exporter, please report it.")
        for node in progress:
            ordered.append(node)
            ready.update(node.output)
        pending = [n for n in pending if n not in progress]
    del graph.node[:]
    graph.node.extend(ordered)


def _trace(head: torch.nn.Module, example: torch.Tensor, path: Path, output_names: list[str], dynamic_batch: bool) -> None:
    axes = {name: {0: "batch"} for name in [INPUT_NAME, *output_names]} if dynamic_batch else None
    with torch.no_grad():
        torch.onnx.export(
            head, (example,), str(path), dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=output_names, dynamic_axes=axes,
        )


def measure_parity(path: Path, head: ScoresHead, inputs: np.ndarray, batch: int | None) -> Parity:
    """Run both on ``inputs`` (in chunks of the model's batch) and compare the clip probabilities."""
    sess = session(path)
    step = batch or len(inputs)
    diffs, agree = [], []
    for start in range(0, len(inputs) - step + 1, step):
        chunk = inputs[start:start + step]
        ours = sess.run(None, {INPUT_NAME: chunk})
        with torch.no_grad():
            ref = head(torch.from_numpy(chunk))
        refs = [r.numpy() for r in (ref if isinstance(ref, tuple) else (ref,))]
        diffs += [float(np.abs(o.astype(np.float32) - r).max()) for o, r in zip(ours, refs)]
        agree.append(ours[-1].argmax(-1) == refs[-1].argmax(-1))
    return Parity(max(diffs), float(np.concatenate(agree).mean()), len(inputs))


def measure_latency(path: Path, example: np.ndarray, runs: int = 30) -> float:
    """Median ONNX Runtime latency in milliseconds for one call on ``example`` (one thread)."""
    sess = session(path)
    sess.run(None, {INPUT_NAME: example})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, {INPUT_NAME: example})
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def export_onnx(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    precision: Precision = "fp32",
    calib: str | None = None,
    batch: int | None = 1,
    force: bool = False,
) -> ExportResult:
    """Export a checkpoint to ``out``; ``batch=None`` makes the batch axis dynamic. Fails when parity breaks."""
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it or --out to write elsewhere.")
    loaded = load_model(checkpoint)
    if precision == "int8" and not loaded.quantized and calib is None:
        raise ValueError(
            f"{checkpoint} is a float checkpoint: int8 needs --calib MANIFEST for post-training quantization, "
            "or distil with --qat to get a quantized checkpoint."
        )
    spec, frames = loaded.frontend, loaded.input_frames
    labelled = None
    if calib is not None:
        inputs, labelled = manifest_features(spec, frames, calib)
    else:
        inputs = feature_batch(spec, frames, test_signals(spec.sample_rate, loaded.window_seconds, count=8))
    head = ScoresHead(loaded.model, loaded.meta.task, loaded.multi_label).eval()
    example = torch.from_numpy(inputs[: batch or 1])
    traced = head
    if loaded.quantized:
        from earmark.distill import export_ready

        traced = ScoresHead(export_ready(loaded.model, example), loaded.meta.task, loaded.multi_label).eval()
    precision_label = "int8" if loaded.quantized else precision
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "model.onnx"
        _trace(traced, example, fp32_path, head.output_names, dynamic_batch=batch is None)
        model = onnx.load(str(fp32_path))
        if precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            model = convert_float_to_float16(model, keep_io_types=True)
            sort_nodes(model.graph)
        elif precision == "int8" and not loaded.quantized:
            from earmark.export.quantize import quantize_static_int8

            model = quantize_static_int8(fp32_path, inputs, batch)
        metadata = build_metadata(loaded, head, precision_label)
        attach_metadata(model, metadata)
        onnx.checker.check_model(model)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        onnx.save(model, str(partial))
    parity = measure_parity(partial, traced if loaded.quantized else head, inputs, batch)
    max_diff, min_agree = TOLERANCE[precision_label]
    if parity.max_abs_diff > max_diff or parity.top1_agreement < min_agree:
        partial.unlink()
        raise RuntimeError(
            f"ONNX Runtime disagrees with PyTorch ({precision_label}): max abs diff {parity.max_abs_diff:.3g} "
            f"(tolerance {max_diff}), top-1 agreement {parity.top1_agreement:.0%} (needs {min_agree:.0%}); "
            "nothing was written — report this with the checkpoint, or try --fp16/fp32."
        )
    os.replace(partial, out)
    accuracy = _accuracy(out, inputs, labelled, metadata, head, batch) if labelled else None
    return ExportResult(out, out.stat().st_size, precision_label, OPSET, parity,
                        measure_latency(out, inputs[: batch or 1]), metadata, accuracy)


def _accuracy(path: Path, inputs: np.ndarray, labels: list[list[str]], meta: ModelMetadata, head: ScoresHead, batch: int | None) -> dict[str, float]:
    """Top-1 accuracy of the exported model and of the PyTorch float model on a labelled calibration set."""
    sess = session(path)
    step = batch or len(inputs)
    n = len(inputs) - len(inputs) % step
    exported = np.concatenate([sess.run(None, {INPUT_NAME: inputs[i:i + step]})[-1] for i in range(0, n, step)])
    with torch.no_grad():
        reference = head(torch.from_numpy(inputs[:n]))
    reference = (reference[-1] if isinstance(reference, tuple) else reference).numpy()
    truth = np.array([meta.labels.index(l[0]) if l and l[0] in meta.labels else -1 for l in labels[:n]])
    return {
        "exported": float((exported.argmax(-1) == truth).mean()),
        "pytorch_fp32": float((reference.argmax(-1) == truth).mean()),
    }
