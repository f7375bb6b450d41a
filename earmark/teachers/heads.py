"""Fine-tuning heads: linear on mean tokens, cls, the layer-wise heads of Hao, Saito and Minematsu, and a frame head.

Layer-wise heads (Hao et al., eqs. 1-9) pool every layer's tokens to one vector e_l (token mean),
weight them with w = softmax(alpha) and feed an MLP: Pre-Norm normalises each e_l before the sum,
Post-Norm normalises the sum, Double-Norm does both.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from earmark.engine.outputs import ModelOutput

HEADS = ("linear", "cls", "cls_norm", "prenorm", "postnorm", "doublenorm")  # cls_norm: AST's LayerNorm + Linear


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
    """A backbone with a clip head (and a frame head for ``task="frame"``); fills clip_logits / frame_logits."""

    def __init__(self, backbone: nn.Module, num_classes: int, head: str = "linear", task: str = "clip"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {HEADS}.")
        self.backbone, self.head_kind, self.task = backbone, head, task
        dim = backbone.embed_dim
        self.frontend = backbone.frontend
        if head in ("linear", "cls"):
            self.head = nn.Linear(dim, num_classes)
        elif head == "cls_norm":
            self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))  # AST's mlp_head: PyTorch's eps 1e-5
        else:
            self.head = LayerWiseHead(dim, len(backbone.layer_modules), num_classes, head)
        if task == "frame":
            self.frame_head = nn.Linear(dim, num_classes)

    @property
    def frame_hop_seconds(self) -> float:
        return self.backbone.frame_hop_seconds

    def forward(self, features: torch.Tensor) -> ModelOutput:
        out = self.backbone(features)
        if self.head_kind == "linear":
            clip = self.head(out.tokens.mean(1))
        elif self.head_kind in ("cls", "cls_norm"):
            clip = self.head(out.embedding)
        else:
            clip = self.head(out.layers)
        frame = self.frame_head(out.frame_embedding) if self.task == "frame" else None
        return dataclasses.replace(out, clip_logits=clip, frame_logits=frame)
