"""Fine-tuning heads: linear on mean tokens, cls, the layer-wise heads of Hao, Saito and Minematsu, and a frame head.

Layer-wise heads (Hao et al., eqs. 1-9) pool every layer's tokens to one vector e_l (token mean),
weight them with w = softmax(alpha) and feed an MLP: Pre-Norm normalises each e_l before the sum,
Post-Norm normalises the sum, Double-Norm does both. The ``sequence`` head is the prediction wrapper of
PretrainedSED (Schmid et al., ICASSP 2025): the backbone's token sequence brought to a fixed number of ``steps``,
a strong (frame) linear head on every step and a weak (clip) linear head on their mean.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from earmark.engine.outputs import ModelOutput
from earmark.teachers.layers import pool_or_stretch

HEADS = ("linear", "cls", "cls_norm", "prenorm", "postnorm", "doublenorm", "sequence")  # cls_norm: AST's LayerNorm + Linear
SEQUENCES = ("tokens", "cls_tokens")  # what the sequence head reads: the tokens, or the clip embedding (cls) then the tokens


class LayerWiseHead(nn.Module):
    """``MLP(N_post(sum_l softmax(alpha)_l N_pre,l(e_l)))`` with identity for the norm a variant omits."""

    def __init__(self, dim: int, layers: int, num_classes: int, kind: str):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(layers))
        pre, post = kind in ("prenorm", "doublenorm"), kind in ("postnorm", "doublenorm")
        self.pre = nn.ModuleList(nn.LayerNorm(dim) if pre else nn.Identity() for _ in range(layers))
        self.post = nn.LayerNorm(dim) if post else nn.Identity()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, num_classes))

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.alpha, dim=0)

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        pooled = torch.stack([norm(layer.mean(dim=1)) for norm, layer in zip(self.pre, layers)])  # (L, B, D)
        return self.mlp(self.post((self.weights()[:, None, None] * pooled).sum(0)))


class TeacherClassifier(nn.Module):
    """A backbone with a clip head (and a frame head for ``task="frame"``); fills clip_logits / frame_logits.

    The ``sequence`` head (``task="frame"``) takes ``steps`` and ``sequence`` (``SEQUENCES``); without ``clip_head`` it
    gives frame logits only.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, head: str = "linear", task: str = "clip", steps: int = 250,
                 sequence: str = "tokens", clip_head: bool = True):
        super().__init__()
        if head not in HEADS or sequence not in SEQUENCES:
            raise ValueError(f"unknown head {head!r} or sequence {sequence!r}; choose a head of {HEADS} and a sequence of {SEQUENCES}.")
        if head == "sequence" and task != "frame":
            raise ValueError("the sequence head gives frame logits; use it with task 'frame'.")
        self.backbone, self.head_kind, self.task = backbone, head, task
        self.steps, self.sequence = steps, sequence
        dim = backbone.embed_dim
        self.frontend = backbone.frontend
        if head == "sequence":
            self.head = nn.Linear(dim, num_classes) if clip_head else None
        elif head in ("linear", "cls"):
            self.head = nn.Linear(dim, num_classes)
        elif head == "cls_norm":
            self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))  # AST's mlp_head: PyTorch's eps 1e-5
        else:
            self.head = LayerWiseHead(dim, len(backbone.layer_modules), num_classes, head)
        if task == "frame":
            self.frame_head = nn.Linear(dim, num_classes)

    @property
    def frame_hop_seconds(self) -> float:
        """The frame step; 0 for the sequence head, whose step is the input's length over ``steps`` (in each output)."""
        return 0.0 if self.head_kind == "sequence" else self.backbone.frame_hop_seconds

    def _sequence_logits(self, out: ModelOutput, frames: int) -> ModelOutput:
        tokens = torch.cat([out.embedding[:, None], out.tokens], dim=1) if self.sequence == "cls_tokens" else out.tokens
        steps = pool_or_stretch(tokens, self.steps)
        clip = self.head(steps.mean(1)) if self.head is not None else None
        return dataclasses.replace(out, clip_logits=clip, frame_logits=self.frame_head(steps),
                                   frame_hop_seconds=frames * self.frontend.hop_seconds / self.steps)

    def forward(self, features: torch.Tensor) -> ModelOutput:
        out = self.backbone(features)
        if self.head_kind == "sequence":
            return self._sequence_logits(out, features.shape[-1])
        if self.head_kind == "linear":
            clip = self.head(out.tokens.mean(1))
        elif self.head_kind in ("cls", "cls_norm"):
            clip = self.head(out.embedding)
        else:
            clip = self.head(out.layers)
        frame = self.frame_head(out.frame_embedding) if self.task == "frame" else None
        return dataclasses.replace(out, clip_logits=clip, frame_logits=frame)
