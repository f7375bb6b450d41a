"""earmark.export: checkpoints -> one deployable ONNX file (fp32 / fp16 / int8 Q/DQ), TensorRT engines, benchmarks.

Names are imported on first use, so `earmark bench` and `earmark export --check` run in an edge install
(no torch): only exporting a checkpoint needs the train extra.
"""

from earmark import lazy_namespace

__all__, __getattr__ = lazy_namespace(__name__, {
    "earmark.export.benchmark": ["BenchRow", "bench_onnx", "bench_torch", "read_metadata", "session"],
    "earmark.export.loading": ["LoadedModel", "ScoresHead"],
    "earmark.export.entry": ["export_onnx"],
    "earmark.export.onnx_export": ["ExportResult", "Parity", "attach_metadata"],
    "earmark.export.tensorrt": ["Finding", "build_engine", "check_tensorrt", "engine_name"],
})
