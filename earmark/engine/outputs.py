"""``ModelOutput``: the one type every teacher and student returns, so no stage guesses an output's shape."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

OBJECTIVES = ("classify", "detect")  # what logits mean: softmax over scenes | independent sigmoid detectors (events)


@dataclass
class ModelOutput:
    """What a model gives for features (B, 1, n_mels, frames); a field the model does not produce is None.

    Logits are pre-activation: the checkpoint's ``objective`` says whether they mean softmax scenes
    (``classify``) or independent sigmoid detectors (``detect``). A student built with ``scene_classes`` also
    gives ``scene_logits``, always a softmax over the checkpoint's ``scene_labels``.
    """

    clip_logits: torch.Tensor | None = None  # (B, C)
    frame_logits: torch.Tensor | None = None  # (B, T', C)
    embedding: torch.Tensor | None = None  # (B, D), the pooled clip embedding
    frame_embedding: torch.Tensor | None = None  # (B, T', D)
    tokens: torch.Tensor | None = None  # (B, N, D), a transformer's tokens after the final norm
    layers: list[torch.Tensor] = field(default_factory=list)  # per block, (B, N, D)
    frame_hop_seconds: float = 0.0  # time step of frame_logits / frame_embedding
    scene_logits: torch.Tensor | None = None  # (B, S), a second head's softmax scenes beside the events (students only)

    def require(self, name: str, hint: str) -> torch.Tensor:
        """The field ``name``, or one clear error with ``hint`` when this model does not produce it."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"this model gives no {name.replace('_', ' ')}: {hint}")
        return value


def probabilities(logits: torch.Tensor, objective: str) -> torch.Tensor:
    """The scores the runtime sees: a sigmoid per class to ``detect``, a softmax over classes to ``classify``.

    The one mapping of logits to scores: traced into exported graphs (``ScoresHead``) and used by evaluation and
    threshold tuning. Frame logits always detect.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r} is not 'detect' (sigmoid, events) or 'classify' (softmax, scenes).")
    return torch.sigmoid(logits) if objective == "detect" else torch.softmax(logits, dim=-1)
