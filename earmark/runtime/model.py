"""The deployable model as the runtime sees it: an inference backend plus its earmark metadata (no torch)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from earmark.audio.metadata import METADATA_KEY, ModelMetadata


class Backend(Protocol):
    """Runs one batch of features and returns the outputs named in the metadata."""

    metadata: ModelMetadata
    chunked: bool  # a stateful model that takes several hops a call (its output has a frame a hop)

    def run(self, features: np.ndarray) -> dict[str, np.ndarray]: ...

    def reset_state(self) -> None: ...


class OnnxBackend:
    """ONNX Runtime on the CPU with few threads and no spinning (edge settings)."""

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model; export one with `earmark export CHECKPOINT`.")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"{path}: ONNX Runtime cannot load it ({str(err).splitlines()[0]}); is it an .onnx file written by `earmark export`?") from None
        text = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if text is None:
            raise ValueError(f"{path}: has no earmark metadata (labels, frontend, window); export it with `earmark export`, "
                             "which writes them into the file.")
        self.metadata = ModelMetadata.from_json(text, str(path))
        frames = next(i.shape[-1] for i in self.session.get_inputs() if i.name == self.metadata.input_name)
        self.chunked = self.metadata.stateful and not isinstance(frames, int)  # stateful files before 2026-12 take one hop
        self.reset_state()

    def reset_state(self) -> None:
        """A stateful model starts again from zero state (a new stream, or a gap in this one)."""
        meta = self.metadata
        self.state = {name: np.zeros(shape, np.float32) for name, shape in zip(meta.state_inputs, meta.state_shapes)}

    def run(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """The scores of ``features``; a stateful model continues from the previous call's state and keeps the new one."""
        meta = self.metadata
        names = [*meta.outputs.values(), *meta.state_outputs]
        values = self.session.run(names, {meta.input_name: features, **self.state})
        self.state = dict(zip(meta.state_inputs, values[len(meta.outputs):]))
        return dict(zip(meta.outputs, values))


class TensorRTBackend:
    """A serialized TensorRT engine with the metadata JSON written beside it by `earmark export --format engine`.

    Device buffers go through cuda-python's runtime bindings (no torch on the device).
    """

    chunked = False  # stateful models run on ONNX Runtime only

    def __init__(self, path: str | os.PathLike):
        try:
            import tensorrt as trt
            from cuda.bindings import runtime as cudart
        except ImportError:
            raise RuntimeError("the TensorRT backend needs tensorrt and cuda-python (JetPack on a Jetson, "
                               "`pip install earmark[tensorrt]` elsewhere); use --backend onnxruntime otherwise.") from None
        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not meta_path.is_file():
            raise ValueError(f"{path}: the metadata {meta_path.name} is missing beside the engine; rebuild with `earmark export --format engine`.")
        self.metadata = ModelMetadata.from_json(meta_path.read_text(), str(meta_path))
        if self.metadata.stateful:
            raise ValueError(f"{path}: a stateful (causal) model runs on ONNX Runtime only for now; use --backend onnxruntime "
                             "with its .onnx file.")
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ValueError(f"{path}: TensorRT cannot deserialize it; engines run only on the GPU and TensorRT version that built them.")
        self.context = self.engine.create_execution_context()
        self.cudart = cudart
        self.stream = self._check(cudart.cudaStreamCreate())
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def reset_state(self) -> None:
        """Stateless: nothing to reset."""

    def _check(self, result):
        err, *value = result
        if err != self.cudart.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA call failed ({err}); is the GPU available to this process?")
        return value[0] if value else None

    def _device(self, name: str, nbytes: int) -> int:
        if name not in self.buffers or self.buffers[name][1] < nbytes:
            self.buffers[name] = (self._check(self.cudart.cudaMalloc(nbytes)), nbytes)
        return self.buffers[name][0]

    def run(self, features: np.ndarray) -> dict[str, np.ndarray]:
        cudart, copy = self.cudart, self.cudart.cudaMemcpyKind
        features = np.ascontiguousarray(features, np.float32)
        self.context.set_input_shape(self.metadata.input_name, features.shape)
        pointer = self._device(self.metadata.input_name, features.nbytes)
        self._check(cudart.cudaMemcpy(pointer, features.ctypes.data, features.nbytes, copy.cudaMemcpyHostToDevice))
        self.context.set_tensor_address(self.metadata.input_name, pointer)
        hosts = {}
        for role, name in self.metadata.outputs.items():
            hosts[role] = np.empty(tuple(self.context.get_tensor_shape(name)), np.float32)
            self.context.set_tensor_address(name, self._device(name, hosts[role].nbytes))
        self.context.execute_async_v3(self.stream)
        self._check(cudart.cudaStreamSynchronize(self.stream))
        for role, name in self.metadata.outputs.items():
            self._check(cudart.cudaMemcpy(hosts[role].ctypes.data, self.buffers[name][0], hosts[role].nbytes, copy.cudaMemcpyDeviceToHost))
        return hosts


def load_backend(path: str | os.PathLike, backend: str = "onnxruntime", threads: int = 1) -> Backend:
    """Open a deployable model with the named backend."""
    if backend == "onnxruntime":
        return OnnxBackend(path, threads)
    if backend == "tensorrt":
        return TensorRTBackend(path)
    raise ValueError(f"unknown backend {backend!r}; use onnxruntime or tensorrt.")


def read_thresholds(path: str | os.PathLike) -> dict[str, float]:
    """Per-label thresholds from a JSON object {label: probability}."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read thresholds ({err}); write a JSON object such as {{\"siren\": 0.6}}.") from None
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in data.values()):
        raise ValueError(f"{path}: thresholds must be a JSON object of label -> probability from 0 to 1, e.g. {{\"siren\": 0.6}}.")
    return {str(k): float(v) for k, v in data.items()}
