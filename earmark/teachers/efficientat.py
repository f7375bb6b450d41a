"""EfficientAT (Schmid, Koutini and Widmer, ICASSP 2023): CP-JKU's MobileNetV3 AudioSet taggers, the whole family.

MobileNetV3-Large's table scaled by a width multiplier (``mn01_as`` ... ``mn40_as``: 0.1 ... 4.0) over one input
channel, the ``efficientat`` log mel (B, 1, 128, frames); squeeze-excitation on channels, BatchNorm eps 1e-3, and the
MLP head (global average pool, Linear to 1280·w, Hardswish, Linear to 527) trained with BCE on AudioSet, so its
logits detect. Modules carry fschmid56/EfficientAT's names (``models/mn/model.py``), so a released state dict
(``mn10_as_mAP_471.pt``) maps key for key; only the SE layer's ``conc_se_layers.0.`` and the head's indices differ.
Any input length (convolutions, then global pooling); frame embeddings step 32 frames (320 ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from earmark.audio.spec import get_frontend
from earmark.engine.outputs import ModelOutput
from earmark.teachers.convert import Mapped, audioset_labels
from earmark.teachers.registry import Converter, TeacherFamily, build_config, register

# MobileNetV3-Large (Howard et al., table 1): input, kernel, expanded, output channels, SE, Hardswish, stride
_TABLE = (
    (16, 3, 16, 16, False, False, 1), (16, 3, 64, 24, False, False, 2), (24, 3, 72, 24, False, False, 1),
    (24, 5, 72, 40, True, False, 2), (40, 5, 120, 40, True, False, 1), (40, 5, 120, 40, True, False, 1),
    (40, 3, 240, 80, False, True, 2), (80, 3, 200, 80, False, True, 1), (80, 3, 184, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1), (80, 3, 480, 112, True, True, 1), (112, 3, 672, 112, True, True, 1),
    (112, 5, 672, 160, True, True, 2), (160, 5, 960, 160, True, True, 1), (160, 5, 960, 160, True, True, 1),
)
_HEAD_WIDTH = 1280
_TIME_STRIDE = 32  # the stem's stride 2 and the table's four
RELEASED_WIDTHS = (0.1, 0.2, 0.4, 0.5, 1.0, 2.0, 3.0, 4.0)
_HEAD_KEYS = {"classifier.2.": "classifier.0.", "classifier.5.": "classifier.3."}  # theirs pool and flatten at 0 and 1
_SE_PREFIX = "conc_se_layers.0."


def make_divisible(channels: float, divisor: int = 8) -> int:
    """The nearest multiple of ``divisor`` (at least ``divisor``), never more than 10% under ``channels``: MobileNet's rounding."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


@dataclass(frozen=True)
class EfficientATConfig:
    width: float = 1.0
    num_classes: int = 527
    dropout: float = 0.2
    frontend: str | dict = "efficientat"


class ConvNormActivation(nn.Sequential):
    """Conv (no bias, 'same' padding) -> BatchNorm (eps 1e-3) -> optional activation, as torchvision's block."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, activation: type[nn.Module] | None = None):
        layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=1e-3)]
        super().__init__(*layers, *([activation()] if activation else []))


class SqueezeExcitation(nn.Module):
    """Channel gates from the spatial mean: ``x * sigmoid(fc2(relu(fc1(mean(x)))))``."""

    def __init__(self, channels: int):
        super().__init__()
        squeezed = make_divisible(channels // 4)
        self.fc1, self.fc2 = nn.Linear(channels, squeezed), nn.Linear(squeezed, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3))))))
        return x * gates[:, :, None, None]


class InvertedResidual(nn.Module):
    """1x1 expansion (when it widens), depthwise conv, optional SE, linear 1x1 projection; residual when shapes allow."""

    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, hardswish: bool, stride: int):
        super().__init__()
        activation = nn.Hardswish if hardswish else nn.ReLU
        layers: list[nn.Module] = [ConvNormActivation(cin, expanded, 1, activation=activation)] if expanded != cin else []
        layers.append(ConvNormActivation(expanded, expanded, kernel, stride, groups=expanded, activation=activation))
        layers += [SqueezeExcitation(expanded)] if se else []
        layers.append(ConvNormActivation(expanded, cout, 1))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class EfficientAT(nn.Module):
    """An ``mn*_as`` tagger over ``efficientat`` features (B, 1, 128, frames): clip logits, the pooled embedding, frame embeddings."""

    def __init__(self, cfg: EfficientATConfig = EfficientATConfig()):
        super().__init__()
        self.cfg, self.frontend = cfg, get_frontend(cfg.frontend)
        rows = [(make_divisible(cin * cfg.width), k, make_divisible(exp * cfg.width), make_divisible(cout * cfg.width), se, hs, s)
                for cin, k, exp, cout, se, hs, s in _TABLE]
        last = rows[-1][3]
        self.embed_dim = 6 * last
        self.features = nn.Sequential(ConvNormActivation(1, rows[0][0], 3, 2, activation=nn.Hardswish),
                                      *(InvertedResidual(*row) for row in rows),
                                      ConvNormActivation(last, self.embed_dim, 1, activation=nn.Hardswish))
        hidden = make_divisible(_HEAD_WIDTH * cfg.width)
        self.classifier = nn.Sequential(nn.Linear(self.embed_dim, hidden), nn.Hardswish(), nn.Dropout(cfg.dropout),
                                        nn.Linear(hidden, cfg.num_classes))

    @property
    def frame_hop_seconds(self) -> float:
        return _TIME_STRIDE * self.frontend.hop_seconds

    def forward(self, features: torch.Tensor) -> ModelOutput:
        maps = self.features(features)  # (B, C, mel', time')
        embedding = maps.mean((2, 3))
        frames = maps.mean(2).transpose(1, 2)
        return ModelOutput(clip_logits=self.classifier(embedding), embedding=embedding, frame_embedding=frames, tokens=frames,
                           frame_hop_seconds=self.frame_hop_seconds)


def _looks_like(ckpt: dict) -> bool:
    return "features.0.0.weight" in ckpt and "features.1.block.0.0.weight" in ckpt


def _width(channels: int) -> float:
    """The released width whose last layer has ``channels`` channels (6 x the rounded 160 x width)."""
    for width in RELEASED_WIDTHS:
        if 6 * make_divisible(160 * width) == channels:
            return width
    raise ValueError(f"its last layer's {channels} channels match no released width ({', '.join(map(str, RELEASED_WIDTHS))}).")


def convert_official(ckpt: dict, **_: Any) -> Mapped:
    """fschmid56/EfficientAT's state dict (``mn*_as_mAP_*.pt``) -> ``mnXX_as`` with its 527 AudioSet classes."""
    if "classifier.5.weight" not in ckpt:
        raise ValueError("holds no MLP head (classifier.5.*); earmark reads the mn*_as files with it, not the fully "
                         "convolutional (*_fc) or attention-pooling heads.")
    last = max(int(k.split(".")[1]) for k in ckpt if k.startswith("features."))
    width = _width(ckpt[f"features.{last}.0.weight"].shape[0])
    state = {}
    for key, value in ckpt.items():
        key = key.replace(_SE_PREFIX, "")
        prefix = next((p for p in _HEAD_KEYS if key.startswith(p)), None)
        state[_HEAD_KEYS[prefix] + key[len(prefix):] if prefix else key] = value
    classes = ckpt["classifier.5.weight"].shape[0]
    labels = audioset_labels() if classes == 527 else [f"class_{i}" for i in range(classes)]
    overrides = {"num_classes": classes} if classes != 527 else {}
    return Mapped(f"mn{round(width * 10):02d}_as", overrides, state, labels, objective="detect")  # trained with BCE


register(TeacherFamily(
    "efficientat", lambda args: EfficientAT(build_config(EfficientATConfig, args)),
    variants={f"mn{round(w * 10):02d}_as": {"width": w, "frontend": "efficientat"} for w in RELEASED_WIDTHS},
    formats={"efficientat": Converter(convert_official, _looks_like, "fschmid56/EfficientAT mn*_as state dict (MobileNetV3, MLP head)")},
))
