"""Student checkpoints: the metadata that describes a student, and the builder ``engine.load_model`` rebuilds it with."""

from __future__ import annotations

from typing import Any

from torch import nn

from earmark.audio.spec import get_frontend
from earmark.engine.checkpoint import CheckpointMeta, default_objective
from earmark.engine.schema import check_output_width
from earmark.students.registry import create_student


def student_checkpoint_meta(model: nn.Module, name: str, labels: list[str], task: str = "clip",
                            overrides: dict[str, Any] | None = None, objective: str | None = None,
                            scene_labels: list[str] = (), **extra: Any) -> CheckpointMeta:
    """Metadata that lets ``engine.load_model`` rebuild ``model`` (``extra`` goes to ``meta.extra``).

    ``objective`` defaults to ``detect`` for frame models (events) and ``classify`` for clip models (scenes);
    ``scene_labels`` name the outputs of a scene head (a student built with ``scene_classes``).
    """
    scenes = {"scene_classes": len(scene_labels)} if scene_labels else {}
    return CheckpointMeta(
        family="student", model=name,
        model_args={"num_classes": len(labels), "task": task, **(overrides or {}), **scenes},
        frontend=model.frontend.to_dict(), labels=list(labels), task=task,
        objective=objective or default_objective(task), scene_labels=list(scene_labels), extra=dict(extra),
    )


def build_student(meta: CheckpointMeta) -> nn.Module:
    """The (untrained) student a checkpoint's metadata describes."""
    args = dict(meta.model_args)
    if not isinstance(args.get("num_classes"), int):
        raise ValueError(f"model_args must give num_classes (the number of outputs), not {args.get('num_classes')!r}.")
    check_output_width(meta.labels, args["num_classes"])
    check_output_width(meta.scene_labels, args.get("scene_classes", 0))
    model = create_student(meta.model, args.pop("num_classes"), args.pop("task", meta.task), **args)
    if get_frontend(meta.frontend) != get_frontend(model.frontend):
        raise ValueError(f"the frontend {meta.frontend.get('name')!r} is not the one {meta.model} computes "
                         f"({get_frontend(model.frontend).name!r}); restore the file earmark wrote.")
    return model
