"""TensorRT: what its ONNX parser would refuse (checked anywhere) and engine building (on the target GPU)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from earmark.audio.metadata import METADATA_KEY
from earmark.export.benchmark import read_onnx

INSTALL_HINT = (
    "TensorRT is not installed: on a Jetson it comes with JetPack (`sudo apt install nvidia-jetpack`), "
    "on an NVIDIA machine run `pip install earmark[tensorrt]`."
)
# Ops TensorRT's ONNX parser has no importer for (signal processing, sequence and training-only ops).
UNSUPPORTED_OPS = {
    "STFT", "DFT", "MelWeightMatrix", "HannWindow", "HammingWindow", "BlackmanWindow",
    "SequenceConstruct", "SequenceAt", "SequenceInsert", "SplitToSequence", "ConcatFromSequence",
    "Loop", "Optional", "OptionalGetElement", "StringNormalizer", "TfIdfVectorizer", "Bernoulli",
    "FakeQuantize",  # OpenVINO's custom op, emitted by NNCF unless stripped to Q/DQ
}


@dataclass(frozen=True)
class Finding:
    """One reason TensorRT would refuse (or mis-build) the graph."""

    node: str
    problem: str
    fix: str = ""  # the command that makes a file TensorRT takes, where one does

    def __str__(self) -> str:
        return f"{self.node}: {self.problem}"


def _retrain_for_tensorrt(model: onnx.ModelProto) -> str:
    """How to get INT8 weights TensorRT takes (scope all) for the checkpoint this file came from: QAT fixed its scope."""
    meta = next((json.loads(p.value) for p in model.metadata_props if p.key == METADATA_KEY), {})
    if meta.get("quantization", {}).get("method") == "qat":
        return "distill it again for TensorRT: earmark distill ... --qat --int8-scope all, then earmark export OUT/student-int8"
    return "export it again for TensorRT: earmark export CHECKPOINT --int8 --calib MANIFEST --int8-scope all"


def check_tensorrt(path: str | os.PathLike) -> list[Finding]:
    """List what TensorRT's parser would refuse: unsupported ops, asymmetric or unsigned Q/DQ, computed conv biases,
    dynamic non-batch axes."""
    model = read_onnx(path)
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    findings = []
    for node in graph.node:
        name = node.name or node.output[0]
        if node.op_type in UNSUPPORTED_OPS or node.domain not in ("", "ai.onnx", "com.microsoft"):
            findings.append(Finding(name, f"op {node.domain + '::' if node.domain else ''}{node.op_type} is not supported by TensorRT's ONNX parser"))
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            findings += _check_zero_point(name, node, constants)
        if node.op_type == "Conv" and len(node.input) > 2 and node.input[2] and node.input[2] not in constants:
            findings.append(Finding(name, "the conv bias is computed (e.g. float16 behind a Cast, as the CPU scopes weights and pointwise store it): "
                                          "TensorRT takes conv biases as initializers only", _retrain_for_tensorrt(model)))
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        dynamic = [i for i, d in enumerate(dims) if i > 0 and not d.HasField("dim_value")]
        if dynamic:
            findings.append(Finding(value.name, f"axes {dynamic} are dynamic: TensorRT needs fixed non-batch shapes (re-export with a fixed window)"))
    return findings


def _check_zero_point(name: str, node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> list[Finding]:
    if len(node.input) < 3 or not node.input[2]:
        return []  # no zero point given: it defaults to 0 (uint8 type unless set)
    zero_point = constants.get(node.input[2])
    if zero_point is None:
        return [Finding(name, "zero point is computed at run time: TensorRT needs constant zero points of 0")]
    problems = []
    if zero_point.dtype != np.int8:
        problems.append(Finding(name, f"{zero_point.dtype} quantization: TensorRT accepts only signed INT8 Q/DQ"))
    if np.any(zero_point != 0):
        problems.append(Finding(name, "asymmetric quantization (non-zero zero point): TensorRT requires zero points of 0"))
    return problems


def engine_name(onnx_path: str | os.PathLike, trt_version: str, gpu: str) -> str:
    """Engines run only where they were built: name them by model hash, TensorRT version and GPU."""
    digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()[:12]
    gpu_slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower()
    return f"{Path(onnx_path).stem}-{digest}-trt{trt_version}-{gpu_slug}.engine"


def gpu_name() -> str:
    """The GPU's name: from torch when it sees CUDA, from the device tree on a Jetson, else "gpu"."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name()
    except ImportError:
        pass
    model = Path("/proc/device-tree/model")
    return model.read_text().strip("\x00 \n") if model.exists() else "gpu"


def build_engine(onnx_path: str | os.PathLike, out_dir: str | os.PathLike | None = None, fp16: bool = False, workspace_gb: float = 1.0) -> Path:
    """Build a serialized engine (fp16, or int8 from a Q/DQ graph) and write the earmark metadata JSON beside it."""
    try:
        import tensorrt as trt
    except ImportError:
        raise RuntimeError(INSTALL_HINT) from None
    findings = check_tensorrt(onnx_path)
    if findings:
        raise ValueError(f"{onnx_path}: TensorRT cannot build it: " + "; ".join(map(str, findings)))
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"{onnx_path}: TensorRT's parser refused it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if any(n.op_type == "QuantizeLinear" for n in onnx.load(str(onnx_path)).graph.node):
        config.set_flag(trt.BuilderFlag.INT8)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT failed to build an engine; run with TensorRT's verbose log to see why.")
    out_dir = Path(out_dir or Path(onnx_path).parent)
    engine_path = out_dir / engine_name(onnx_path, trt.__version__, gpu_name())
    engine_path.write_bytes(bytes(serialized))
    metadata = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}.get(METADATA_KEY)
    if metadata is None:
        raise ValueError(f"{onnx_path}: no earmark metadata; export it with `earmark export` first.")
    engine_path.with_suffix(".json").write_text(metadata)
    return engine_path
