"""earmark.export: checkpoints -> one deployable ONNX file (fp32 / fp16 / int8 Q/DQ), TensorRT engines, benchmarks.

Names are imported on first use, so `earmark bench` and `earmark export --check` run in an edge install
(no torch): only exporting a checkpoint needs the train extra.
"""

import importlib

_HOMES = {
    "earmark.export.benchmark": ["BenchRow", "bench_onnx", "bench_torch", "read_metadata", "session"],
    "earmark.export.loading": ["LoadedModel", "ScoresHead"],
    "earmark.export.onnx_export": ["ExportResult", "Parity", "attach_metadata", "export_onnx"],
    "earmark.export.tensorrt": ["Finding", "build_engine", "check_tensorrt", "engine_name"],
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = list(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'earmark.export' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)
