"""A checkpoint's model, rebuilt by ``engine.load_model``, wrapped so its outputs are the deployed scores."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from earmark.audio.metadata import default_hop_seconds
from earmark.audio.spec import FrontendSpec
from earmark.engine.checkpoint import CheckpointMeta, checkpoint_hash, load_model
from earmark.engine.outputs import probabilities

DEFAULT_WINDOW_SECONDS = 1.0


@dataclass
class LoadedModel:
    """A checkpoint's float (or fake-quantized) model with what export needs to describe it."""

    model: nn.Module
    meta: CheckpointMeta
    sha256: str

    @classmethod
    def open(cls, path: str | os.PathLike) -> LoadedModel:
        """Any earmark checkpoint (student or teacher, float or quantized), rebuilt by the stage that registered its family."""
        import earmark.students  # noqa: F401  (importing a model stage registers how its checkpoints are rebuilt)
        import earmark.teachers  # noqa: F401

        model, meta = load_model(path)
        return cls(model, meta, checkpoint_hash(Path(path)))

    @property
    def quantized(self) -> bool:
        return self.meta.quantized

    @property
    def frontend(self) -> FrontendSpec:
        return FrontendSpec.from_dict(self.meta.frontend)

    @property
    def window_seconds(self) -> float:
        return float(self.meta.extra.get("window_seconds", DEFAULT_WINDOW_SECONDS))

    @property
    def hop_seconds(self) -> float:
        return float(self.meta.extra.get("hop_seconds", default_hop_seconds(self.window_seconds)))

    @property
    def input_frames(self) -> int:
        spec = self.frontend
        return spec.num_frames(round(self.window_seconds * spec.sample_rate))

    @property
    def objective(self) -> str:
        """``detect``: independent sigmoid detectors (events); ``classify``: softmax over scenes."""
        return self.meta.objective


class ScoresHead(nn.Module):
    """Features (B, 1, n_mels, frames) -> probabilities: clip (B, C) and/or frame (B, T', C), and a scene head's (B, S)."""

    def __init__(self, model: nn.Module, task: str, objective: str, scenes: bool = False):
        super().__init__()
        self.model = model
        self.task = task
        self.objective = objective
        self.scenes = scenes

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The graph's outputs, in ``output_names`` order."""
        out = self.model(features)
        scores = (probabilities(out.clip_logits, self.objective),)
        if self.task == "frame":
            scores = (probabilities(out.frame_logits, "detect"), *scores)
        if self.scenes:
            scores = (*scores, probabilities(out.require("scene_logits", "the checkpoint names scene labels; re-create it."), "classify"))
        return scores

    @property
    def roles(self) -> list[str]:
        """What each output is, in order: ``frame``, ``clip`` and ``scene`` (the runtime's names for them)."""
        return (["frame"] if self.task == "frame" else []) + ["clip"] + (["scene"] if self.scenes else [])

    @property
    def output_names(self) -> list[str]:
        return [f"{role}_probs" for role in self.roles]
