"""Teacher checkpoints: registry name + overrides + optional head, and the builder ``engine.load_model`` rebuilds them with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from earmark.audio.spec import FrontendSpec
from earmark.engine.checkpoint import CheckpointMeta, default_objective, load_model
from earmark.engine.schema import check_output_width
from earmark.teachers.heads import TeacherClassifier
from earmark.teachers.registry import create_teacher, length_policy


def teacher_checkpoint_meta(frontend: FrontendSpec, name: str, overrides: dict[str, Any] | None = None, labels: list[str] | None = None,
                            task: str = "clip", head: str | None = None, objective: str | None = None,
                            head_options: dict[str, Any] | None = None, **extra: Any) -> CheckpointMeta:
    """Metadata that lets ``engine.load_model`` rebuild the teacher (a backbone, or a TeacherClassifier with ``head``).

    ``head_options`` are the TeacherClassifier's further arguments (the sequence head's ``steps``, ``sequence``, ``clip_head``).
    ``model_args["length"]`` records the length policy the rebuilt teacher applies (``registry.length_policy``).
    """
    args: dict[str, Any] = {"overrides": dict(overrides or {}), "length": length_policy(name, overrides)}
    if head is not None:
        args["head"] = {"kind": head, "num_classes": len(labels or []), "task": task, **(head_options or {})}
    return CheckpointMeta(family="teacher", model=name, model_args=args, frontend=frontend.to_dict(),
                          labels=list(labels or []), task=task, objective=objective or default_objective(task), extra=dict(extra))


def build_teacher(meta: CheckpointMeta) -> nn.Module:
    """The (untrained) teacher a checkpoint's metadata describes."""
    overrides = {**meta.model_args.get("overrides", {}), "frontend": meta.frontend}  # e.g. ASiT at 16 or 32 kHz
    backbone = create_teacher(meta.model, **overrides)
    head = meta.model_args.get("head")
    if head:
        check_output_width(meta.labels, head["num_classes"])
    if not head:
        return backbone
    options = {k: v for k, v in head.items() if k not in ("kind", "num_classes", "task")}
    return TeacherClassifier(backbone, head["num_classes"], head["kind"], head["task"], **options)


def teacher_backbone(source: str, overrides: dict[str, Any] | None = None) -> tuple[nn.Module, str, dict[str, Any]]:
    """A backbone to train further, its registry name and overrides: from a checkpoint folder (any head dropped) or fresh by name."""
    if Path(source).is_dir():
        model, meta = load_model(source, "teacher")
        backbone = model.backbone if isinstance(model, TeacherClassifier) else model
        return backbone, meta.model, {**meta.model_args.get("overrides", {}), "frontend": meta.frontend}
    return create_teacher(source, **(overrides or {})), source, dict(overrides or {})
