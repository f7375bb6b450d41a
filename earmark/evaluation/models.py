"""The model under evaluation as the runtime loads it: an .onnx as it is, a checkpoint through its ONNX export."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def deployable(model: str | os.PathLike) -> Iterator[Path]:
    """Yield an .onnx path for ``model``; a checkpoint folder is exported (fp32, or int8 when it is a QAT
    checkpoint) into a temporary folder by `earmark export`'s code, parity-checked, and removed afterwards."""
    path = Path(model)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model; export one with `earmark export CHECKPOINT`.")
        yield path
        return
    if not (path / "earmark.json").is_file():
        raise ValueError(f"{path} is neither an .onnx file nor an earmark checkpoint folder (with earmark.json); "
                         "pass what `earmark distill`/`finetune` or `earmark export` wrote.")
    from earmark.export import export_onnx

    with tempfile.TemporaryDirectory(prefix="earmark-eval-") as tmp:
        yield export_onnx(path, Path(tmp) / f"{path.name}.onnx").path
