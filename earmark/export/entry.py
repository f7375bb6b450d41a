"""`earmark export`'s one entry: a causal frame detector exports as a stateful stream, every other model as windows."""

from __future__ import annotations

import os
from pathlib import Path

from earmark.export.loading import LoadedModel
from earmark.export.onnx_export import ExportResult, Precision, export_windowed
from earmark.export.stateful import export_stateful


def export_onnx(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    precision: Precision = "fp32",
    calib: str | None = None,
    batch: int | None = 1,
    force: bool = False,
    int8_scope: str | None = None,
    min_agreement: float | None = None,
    max_diff: float | None = None,
) -> ExportResult:
    """Export a checkpoint to ``out``; ``batch=None`` makes the batch axis dynamic. Writes nothing when a parity gate fails.

    INT8 comes from a QAT checkpoint (its own scope) or from post-training quantization on ``calib`` in
    ``int8_scope`` (default pointwise). ``min_agreement`` and ``max_diff`` override the top-1 agreement and largest-difference gates.
    """
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it or --out to write elsewhere.")
    loaded = LoadedModel.open(checkpoint)
    if getattr(loaded.model, "causal", False) and loaded.meta.task == "frame":  # a causal detector streams with state, no windows
        return export_stateful(loaded, out, precision, min_agreement)
    return export_windowed(loaded, checkpoint, out, precision, calib, batch, int8_scope, min_agreement, max_diff)
