"""The student registry (timm style): named variants, ``create_student(name, num_classes, task, **overrides)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from earmark.engine.schema import check_arguments
from earmark.students.crnn import CausalCRNN
from earmark.students.tfsepnet import TFSepNet
from earmark.students.vit import AudioViT


@dataclass(frozen=True)
class StudentSpec:
    """A registered variant: its builder, default arguments and a one-line summary."""

    builder: Callable[..., nn.Module]
    defaults: dict[str, Any]
    summary: str


REGISTRY: dict[str, StudentSpec] = {
    "tfsepnet64": StudentSpec(TFSepNet, dict(base_channels=64, depth=17, frontend="tfsepnet"),
                              "TF-SepNet-64, depth 17, ResNorm (Cai et al., DCASE'24)"),
    "tfsepnet40": StudentSpec(TFSepNet, dict(base_channels=40, depth=16, frontend="cpjku"),
                              "TF-SepNet-40, depth 16, ResNorm (ICASSP'24 Table 2)"),
    "tfsepnet40_25ms": StudentSpec(TFSepNet, dict(base_channels=40, depth=16, frontend="efficientat"),
                                   "TF-SepNet-40 on EfficientAT's 25-ms, 128-mel frames: hears 50-ms gaps between beeps"),
    "tfsepnet40_ada": StudentSpec(TFSepNet, dict(base_channels=40, depth=16, norm="adaresnorm", frontend="cpjku"),
                                  "TF-SepNet-40 with AdaResNorm (the paper's norm)"),
    "tfsepnet32": StudentSpec(TFSepNet, dict(base_channels=32, depth=17, frontend="tfsepnet"),
                              "TF-SepNet-32, depth 17"),
    "tfsepnet16": StudentSpec(TFSepNet, dict(base_channels=16, depth=16, frontend="cpjku"),
                              "TF-SepNet-16, a micro budget for microcontroller-class devices"),
    "crnn_causal": StudentSpec(CausalCRNN, dict(channels=(32, 32, 48, 64, 64), hidden=64, frontend="cpjku"),
                               "causal CRNN (4 causal separable blocks + GRU 64), streams 62.5-ms hops with state"),
    "crnn_causal_tiny": StudentSpec(CausalCRNN, dict(channels=(16, 16, 24, 32, 32), hidden=32, frontend="cpjku"),
                                    "causal CRNN at a quarter of the width, for microcontroller-class budgets"),
    "vit_tiny_audio": StudentSpec(AudioViT, dict(dim=192, depth=12, heads=3), "ViT 192x12x3 (CED-Tiny size)"),
    "vit_nano_audio": StudentSpec(AudioViT, dict(dim=96, depth=4, heads=2), "ViT 96x4x2"),
    "vit_micro_audio": StudentSpec(AudioViT, dict(dim=64, depth=2, heads=2), "ViT 64x2x2 (~120k parameters)"),
}


def create_student(name: str, num_classes: int, task: str = "clip", **overrides: Any) -> nn.Module:
    """Build a registered student; ``overrides`` change its constructor arguments."""
    if name not in REGISTRY:
        raise ValueError(f"unknown student {name!r}; choose one of {sorted(REGISTRY)} (see `earmark complexity --list`).")
    if task not in ("clip", "frame"):
        raise ValueError(f"task must be 'clip' or 'frame', not {task!r}.")
    spec = REGISTRY[name]
    arguments = {**spec.defaults, **overrides}
    check_arguments(spec.builder, arguments, f"student {name!r}")
    return spec.builder(num_classes=num_classes, task=task, **arguments)


def list_students() -> dict[str, str]:
    """Registered names and what they are."""
    return {name: spec.summary for name, spec in REGISTRY.items()}


def is_causal(name: str) -> bool:
    """Whether the registered student ``name`` is causal (streams with state; stateful export); False for other names."""
    return name in REGISTRY and getattr(REGISTRY[name].builder, "causal", False)
