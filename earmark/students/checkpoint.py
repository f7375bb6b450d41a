"""Student checkpoints: the metadata that describes a student, and the builder ``engine.load_model`` rebuilds it with."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from torch import nn

from earmark.audio.spec import get_frontend
from earmark.engine.checkpoint import CheckpointMeta, default_objective, load_checkpoint
from earmark.engine.schema import check_output_width
from earmark.students.registry import create_student

LABEL_LAYERS = ("classifier.", "attention.", "head.")  # a student's layers with one output per label (TF-SepNet, ViT)


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


def student_for_labels(path: str | os.PathLike, labels: list[str]) -> tuple[nn.Module, CheckpointMeta]:
    """A float frame-task student checkpoint's model with new, untrained label layers for ``labels`` (its body's weights
    kept), and the metadata of that model: the start of a fine-tune to another label set."""
    state, meta = load_checkpoint(path)
    if meta.family != "student" or meta.quantized or meta.task != "frame":
        raise ValueError(f"{path} holds a {'quantized ' if meta.quantized else ''}{meta.family} ({meta.model}, {meta.task} task); "
                         "pass a float frame-task student checkpoint (the OUT/student of `earmark distill --task frame`).")
    meta = replace(meta, labels=list(labels), model_args={**meta.model_args, "num_classes": len(labels)}, extra={
        key: meta.extra[key] for key in ("window_seconds", "hop_seconds") if key in meta.extra})
    model = build_student(meta)
    fresh = model.state_dict()
    model.load_state_dict({k: v for k, v in state.items() if k in fresh and v.shape == fresh[k].shape and
                           not k.startswith(LABEL_LAYERS)}, strict=False)
    return model, meta

