"""Checkpoint -> one deployable .onnx (DESIGN artifact 4): fp32, fp16 or int8 Q/DQ, with metadata and parity."""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import torch

from earmark.audio.metadata import METADATA_KEY, ModelMetadata
from earmark.export.benchmark import session
from earmark.export.inputs import INPUT_NAME, feature_batch, manifest_features, test_signals
from earmark.export.loading import LoadedModel, ScoresHead
from earmark.export.timing import Timings, repeated
from earmark.export.qdq import (compact, conv_precisions, dequantize_weight_only, store_float16_exact, store_int8_weights,
                                store_uniform_constants)
from earmark.students import runtime_layout

Precision = Literal["fp32", "fp16", "int8"]
OPSET = 17
# Parity gates against the PyTorch model on the parity inputs: (max abs difference of probabilities, top-1 agreement).
# INT8 is compared with the float model for PTQ and with the fake-quantized model for QAT.
TOLERANCE: dict[str, tuple[float, float]] = {"fp32": (1e-4, 1.0), "fp16": (1e-2, 0.95), "int8": (0.15, 0.95)}


@dataclass(frozen=True)
class Gate:
    """One parity check: what was measured, the limit, and whether it passed."""

    name: str
    measured: float
    limit: float
    passed: bool

    def __str__(self) -> str:
        if self.name.endswith("agreement"):
            return f"{self.name} {self.measured:.1%} (>= {self.limit:.0%}) {'ok' if self.passed else 'FAILED'}"
        if self.name == "finite outputs":
            return f"{self.name} {'ok' if self.passed else 'FAILED (NaN or inf)'}"
        return f"{self.name} {self.measured:.2e} (<= {self.limit:g}) {'ok' if self.passed else 'FAILED'}"


@dataclass
class Parity:
    """How closely ONNX Runtime reproduces PyTorch on real inputs."""

    max_abs_diff: float
    top1_agreement: float  # softmax models: same top-1 class; sigmoid detectors: same decision per label at its threshold
    inputs: int
    finite: bool = True
    multi_label: bool = False

    def gates(self, max_diff: float, min_agreement: float) -> list[Gate]:
        """The three gates: finite outputs, max abs difference, agreement of decisions (NaN never passes)."""
        agreement = "label agreement" if self.multi_label else "top-1 agreement"
        return [
            Gate("finite outputs", float(self.finite), 1.0, self.finite),
            Gate("max |diff|", self.max_abs_diff, max_diff, self.finite and self.max_abs_diff <= max_diff),
            Gate(agreement, self.top1_agreement, min_agreement, self.finite and self.top1_agreement >= min_agreement),
        ]


@dataclass
class ExportResult:
    """One written model and the figures measured on it."""

    path: Path
    bytes: int
    precision: str
    opset: int
    parity: Parity
    latency: Timings
    metadata: ModelMetadata
    accuracy: dict[str, float] | None = None
    gates: list[Gate] = field(default_factory=list)

    @property
    def latency_ms(self) -> float:
        """Median CPU milliseconds of one ONNX Runtime call (one thread): the figure a busy machine does not inflate."""
        return self.latency.cpu_p50


def build_metadata(loaded: LoadedModel, head: ScoresHead, precision: str, quantization: dict | None = None) -> ModelMetadata:
    """The runtime's view of the model, from the checkpoint's metadata."""
    extra = loaded.meta.extra
    frame_hop = float(extra.get("frame_hop_seconds", getattr(loaded.model, "frame_hop_seconds", 0.0)))
    return ModelMetadata(
        labels=tuple(loaded.meta.labels),
        task=loaded.meta.task,
        frontend=loaded.frontend,
        window_seconds=loaded.window_seconds,
        hop_seconds=loaded.hop_seconds,
        input_name=INPUT_NAME,
        input_frames=loaded.input_frames,
        outputs=dict(zip(head.roles, head.output_names)),
        scene_labels=tuple(loaded.meta.scene_labels),
        objective=head.objective,
        thresholds={k: float(v) for k, v in extra.get("thresholds", {}).items()},
        default_threshold=float(extra.get("default_threshold", 0.5)),
        postprocess={k: float(v) for k, v in extra.get("postprocess", {}).items()},
        frame_hop_seconds=frame_hop if head.task == "frame" else 0.0,
        precision=precision,
        source_checkpoint_sha256=loaded.sha256,
        model_name=loaded.meta.model,
        quantization=quantization or {},
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
    with torch.no_grad(), warnings.catch_warnings():
        # shapes other than the batch are fixed at export, so sizes read as Python numbers are the right constants
        warnings.filterwarnings("ignore", "Converting a tensor to a Python", torch.jit.TracerWarning)
        torch.onnx.export(
            head, (example,), str(path), dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=output_names, dynamic_axes=axes,
        )


def measure_parity(path: Path, head: ScoresHead, inputs: np.ndarray, batch: int | None, thresholds: np.ndarray | float = 0.5) -> Parity:
    """Run both on ``inputs`` (in chunks of the model's batch) and compare the probabilities: top-1 on clip scores, or for
    detectors the decision per label at ``thresholds`` (per class: the ones the runtime will use)."""
    sess = session(path)
    step = batch or len(inputs)
    diffs, agree, finite = [], [], True
    for start in range(0, len(inputs) - step + 1, step):
        chunk = inputs[start:start + step]
        ours = sess.run(None, {INPUT_NAME: chunk})
        with torch.no_grad():
            ref = head(torch.from_numpy(chunk))
        refs = [r.numpy() for r in ref]
        finite = finite and all(np.isfinite(o).all() and np.isfinite(r).all() for o, r in zip(ours, refs))
        diffs += [float(np.abs(o.astype(np.float32) - r).max()) for o, r in zip(ours, refs)]
        clip = head.roles.index("clip")
        if head.objective == "detect":
            agree.append(((ours[clip] >= thresholds) == (refs[clip] >= thresholds)).reshape(-1))
        else:
            agree.append(ours[clip].argmax(-1) == refs[clip].argmax(-1))
    return Parity(max(diffs), float(np.concatenate(agree).mean()), len(inputs), bool(finite), head.objective == "detect")


def measure_latency(path: Path, example: np.ndarray, runs: int = 30, state: dict[str, np.ndarray] | None = None) -> Timings:
    """ONNX Runtime's wall and CPU milliseconds per call on ``example`` (one thread, so the calling thread's CPU time; a
    stateful model's ``state`` fed beside it)."""
    sess = session(path)
    feeds = {INPUT_NAME: example, **(state or {})}
    return repeated(lambda: sess.run(None, feeds), runs, warmup=1)


def export_windowed(loaded: LoadedModel, checkpoint: str | os.PathLike, out: Path, precision: Precision = "fp32",
                    calib: str | None = None, batch: int | None = 1, int8_scope: str | None = None,
                    min_agreement: float | None = None, max_diff: float | None = None) -> ExportResult:
    """A model that hears windows (features of one window in, scores out) to ``out``; see ``export_onnx``."""
    if precision == "int8" and not loaded.quantized and calib is None:
        raise ValueError(
            f"{checkpoint} is a float checkpoint: int8 needs --calib MANIFEST for post-training quantization, "
            "or distil with --qat to get a quantized checkpoint."
        )
    scope = _int8_scope(loaded, precision, int8_scope, checkpoint)
    spec, frames = loaded.frontend, loaded.input_frames
    labelled = None
    if calib is not None:
        inputs, labelled = manifest_features(spec, frames, calib)
    else:
        inputs = feature_batch(spec, frames, test_signals(spec.sample_rate, loaded.window_seconds, count=16))
    scores_head = lambda model: ScoresHead(model, loaded.meta.task, loaded.objective, bool(loaded.meta.scene_labels)).eval()
    head = scores_head(loaded.model)
    example = torch.from_numpy(inputs[: batch or 1])
    reference = head  # parity is measured against the model as trained (QAT: fake-quantized, weights on their grid)
    if loaded.quantized:
        from earmark.students import export_ready

        reference = scores_head(export_ready(loaded.model, example))
    # the same function in ops ONNX Runtime runs faster; a QAT file keeps the ops NNCF traced unless it is weight-only
    traced = scores_head(runtime_layout(reference.model)) if scope == "weights" or not loaded.quantized else reference
    precision_label = "int8" if loaded.quantized else precision
    quantization = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "model.onnx"
        _trace(traced, example, fp32_path, head.output_names, dynamic_batch=batch is None)
        model = onnx.load(str(fp32_path))
        if loaded.quantized:
            quantization = store_qat(model, scope)
        elif precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            model = convert_float_to_float16(model, keep_io_types=True)
            sort_nodes(model.graph)
        elif precision == "int8":
            from earmark.export.quantize import quantize_static_int8

            model = quantize_static_int8(fp32_path, inputs, batch, scope)
            quantization = {"method": "ptq", "scope": scope, **conv_precisions(model)}
        compact(model)
        metadata = build_metadata(loaded, head, precision_label, quantization)
        attach_metadata(model, metadata)
        onnx.checker.check_model(model)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        onnx.save(model, str(partial))
    decision = np.array([metadata.threshold(label) for label in metadata.labels], dtype=np.float32)
    parity = measure_parity(partial, reference, inputs, batch, decision)
    default_diff, default_agreement = TOLERANCE[precision_label]
    gates = parity.gates(default_diff if max_diff is None else max_diff, default_agreement if min_agreement is None else min_agreement)
    if not all(g.passed for g in gates):
        partial.unlink()
        raise RuntimeError(
            f"ONNX Runtime disagrees with PyTorch ({precision_label}, {parity.inputs} inputs); nothing was written:\n"
            + "\n".join(f"  {g}" for g in gates) + "\n" + _advice(precision_label, loaded.quantized, parity.finite)
        )
    os.replace(partial, out)
    accuracy = _accuracy(out, inputs, labelled, metadata, head, batch) if labelled else None
    return ExportResult(out, out.stat().st_size, precision_label, OPSET, parity,
                        measure_latency(out, inputs[: batch or 1]), metadata, accuracy, gates)


def store_qat(model: onnx.ModelProto, scope: str) -> dict:
    """A traced QAT graph's weights stored as INT8 (in place); returns its quantization metadata."""
    store_int8_weights(model)
    if scope != "all":  # a CPU file (TensorRT, scope all, wants DequantizeLinear weights and initializer biases)
        dequantize_weight_only(model)
        store_uniform_constants(model)
        store_float16_exact(model)
    return {"method": "qat", "scope": scope, **conv_precisions(model)}


def _int8_scope(loaded: LoadedModel, precision: str, requested: str | None, checkpoint: str | os.PathLike) -> str | None:
    """The INT8 scope: a QAT checkpoint's own, or the requested one for PTQ (default pointwise)."""
    from earmark.students import SCOPES

    if requested is not None and requested not in (*SCOPES, "integer"):
        raise ValueError(f"unknown --int8-scope {requested!r}; use 'pointwise' (CPU), 'all' (TensorRT, NPUs) or 'integer' (CPU).")
    if loaded.quantized:
        trained = loaded.meta.extra["quantization"].get("scope", "all")
        if requested == "integer":
            raise ValueError(f"{checkpoint} is a QAT checkpoint; scope integer is post-training only: export its float "
                             "student with --int8 --calib MANIFEST --int8-scope integer.")
        if requested not in (None, trained):
            raise ValueError(f"{checkpoint} was quantization-aware trained in scope {trained!r}; export it without --int8-scope, "
                             f"or rerun `earmark distill --qat --int8-scope {requested}`.")
        return trained
    if precision != "int8":
        if requested is not None:
            raise ValueError("--int8-scope applies to INT8 only; add --int8 --calib MANIFEST.")
        return None
    if requested == "weights":
        raise ValueError("weight-only INT8 (scope weights) comes from quantization-aware training: "
                         "`earmark distill --qat --int8-scope weights`; post-training INT8 takes scope pointwise, all or integer.")
    return requested or "pointwise"


def _advice(precision: str, qat: bool, finite: bool) -> str:
    if not finite:
        return ("The model's outputs are NaN or infinite (a NaN in its weights spreads to every output): retrain it, or export "
                "an earlier checkpoint.")
    if precision != "int8":
        return "Report this with the checkpoint, or try another precision."
    if qat:
        return "The QAT model and its export disagree: report this with the checkpoint."
    return ("Post-training INT8 changes this model's decisions: try --int8-scope pointwise, a larger and representative "
            "--calib set, or quantization-aware training (`earmark distill --qat`); --min-agreement lowers the gate.")


def _accuracy(path: Path, inputs: np.ndarray, labels: list[list[str]], meta: ModelMetadata, head: ScoresHead, batch: int | None) -> dict[str, float]:
    """Top-1 accuracy of the exported model and of the PyTorch float model on a labelled calibration set."""
    sess = session(path)
    step = batch or len(inputs)
    n = len(inputs) - len(inputs) % step
    clip = head.roles.index("clip")
    exported = np.concatenate([sess.run(None, {INPUT_NAME: inputs[i:i + step]})[clip] for i in range(0, n, step)])
    with torch.no_grad():
        reference = head(torch.from_numpy(inputs[:n]))[clip].numpy()
    truth = np.array([meta.labels.index(l[0]) if l and l[0] in meta.labels else -1 for l in labels[:n]])
    return {
        "exported": float((exported.argmax(-1) == truth).mean()),
        "pytorch_fp32": float((reference.argmax(-1) == truth).mean()),
    }
