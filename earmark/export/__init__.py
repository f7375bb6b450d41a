"""earmark.export: checkpoints -> one deployable ONNX file (fp32 / fp16 / int8 Q/DQ), TensorRT engines, benchmarks."""

from earmark.export.benchmark import BenchRow, bench_onnx, bench_torch, read_metadata
from earmark.export.loading import LoadedModel, ScoresHead, load_model
from earmark.export.onnx_export import ExportResult, Parity, export_onnx, session
from earmark.export.tensorrt import Finding, build_engine, check_tensorrt, engine_name

__all__ = [
    "export_onnx", "ExportResult", "Parity", "session", "load_model", "LoadedModel", "ScoresHead",
    "check_tensorrt", "build_engine", "engine_name", "Finding", "bench_onnx", "bench_torch", "BenchRow", "read_metadata",
]
