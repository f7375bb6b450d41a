"""PANNs (Kong et al., TASLP 2020): CNN14 and its decision-level SED variants, the whole family.

``bn0`` (a BatchNorm over the 64 mel bins of the ``panns`` decibels), then six blocks of two 3x3 conv + BatchNorm + ReLU
with 2x2 average pooling after all but the last, over the (time, mel) image, then the mean over mel. ``cnn14`` pools
time by max + mean and classifies through ``fc1`` (ReLU) and ``fc_audioset``. ``cnn14_decision_max``
(Cnn14_DecisionLevelMax) smooths time by a 3-step max + mean, classifies each 32-frame segment (320 ms) and takes the
clip as the segments' maximum; ``cnn14_decision_att`` (Cnn14_DecisionLevelAtt) weighs the segments' probabilities by a
softmax attention and gives that clip probability as its logit. All trained with BCE, so the logits detect. Modules
carry qiuqiangkong/audioset_tagging_cnn's names (``pytorch/models.py``); its files (``{'model': state, 'iteration',
...}``) also hold torchlibrosa's DFT and mel weights, which earmark checks against the ``panns`` frontend and drops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from earmark.audio.melbanks import mel_banks
from earmark.audio.spec import get_frontend
from earmark.engine.outputs import ModelOutput
from earmark.teachers.convert import Mapped, audioset_labels
from earmark.teachers.registry import Converter, TeacherFamily, build_config, register

POOLINGS = ("clip", "max", "att")  # Cnn14, Cnn14_DecisionLevelMax, Cnn14_DecisionLevelAtt
_CHANNELS = (64, 128, 256, 512, 1024, 2048)
_TIME_STRIDE = 32  # five 2x2 poolings
_FRONTEND_KEYS = ("spectrogram_extractor.", "logmel_extractor.")  # torchlibrosa's frozen STFT and mel weights
_UNUSED = ("att_block.bn_att.",)  # AttBlock builds it, its forward never calls it
_PROBABILITY_EPS = 1e-6  # the attention clip's probability is clamped to [eps, 1 - eps] before its logit


@dataclass(frozen=True)
class PANNsConfig:
    channels: tuple[int, ...] = _CHANNELS
    num_classes: int = 527
    pooling: str = "clip"
    n_mels: int = 64
    frontend: str | dict = "panns"


class ConvBlock(nn.Module):
    """Two 3x3 conv (no bias) + BatchNorm + ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class AttentionPooling(nn.Module):
    """AttBlock with a sigmoid: the clip probability ``sum_t softmax_t(clamp(att, -10, 10)) sigmoid(cla)``, and ``cla``."""

    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.att, self.cla = nn.Conv1d(dim, classes, 1), nn.Conv1d(dim, classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.softmax(self.att(x).clamp(-10, 10), dim=-1)
        logits = self.cla(x)
        return (weights * torch.sigmoid(logits)).sum(-1), logits.transpose(1, 2)


class PANNs(nn.Module):
    """CNN14 over ``panns`` features (B, 1, 64, frames): clip logits, and 320-ms segment logits for the decision-level variants."""

    def __init__(self, cfg: PANNsConfig = PANNsConfig()):
        super().__init__()
        if cfg.pooling not in POOLINGS:
            raise ValueError(f"unknown PANNs pooling {cfg.pooling!r}; choose one of {POOLINGS}.")
        self.cfg, self.frontend, self.embed_dim = cfg, get_frontend(cfg.frontend), cfg.channels[-1]
        self.bn0 = nn.BatchNorm2d(cfg.n_mels)
        self.blocks = nn.ModuleList(ConvBlock(cin, cout) for cin, cout in zip((1, *cfg.channels[:-1]), cfg.channels))
        self.fc1 = nn.Linear(self.embed_dim, self.embed_dim)
        if cfg.pooling == "att":
            self.att_block = AttentionPooling(self.embed_dim, cfg.num_classes)
        else:
            self.fc_audioset = nn.Linear(self.embed_dim, cfg.num_classes)

    @property
    def frame_hop_seconds(self) -> float:
        return _TIME_STRIDE * self.frontend.hop_seconds

    def forward(self, features: torch.Tensor) -> ModelOutput:
        x = self.bn0(features.transpose(1, 2)).permute(0, 2, 3, 1)  # BatchNorm over mel, then the (time, mel) image
        for i, block in enumerate(self.blocks):
            x = block(x)
            x = F.avg_pool2d(x, 2) if i < len(self.blocks) - 1 else x
        x = x.mean(3)  # (B, C, time')
        if self.cfg.pooling == "clip":
            hidden = F.relu(self.fc1(x.amax(2) + x.mean(2)))
            frames = x.transpose(1, 2)
            return ModelOutput(clip_logits=self.fc_audioset(hidden), embedding=hidden, frame_embedding=frames, tokens=frames,
                               frame_hop_seconds=self.frame_hop_seconds)
        x = F.max_pool1d(x, 3, 1, 1) + F.avg_pool1d(x, 3, 1, 1)
        hidden = F.relu(self.fc1(x.transpose(1, 2)))  # (B, segments, C)
        if self.cfg.pooling == "max":
            frame = self.fc_audioset(hidden)
            clip = frame.amax(1)  # the max of sigmoids is the sigmoid of the max
        else:
            probability, frame = self.att_block(hidden.transpose(1, 2))
            clip = torch.logit(probability, eps=_PROBABILITY_EPS)
        return ModelOutput(clip_logits=clip, frame_logits=frame, embedding=hidden.mean(1), frame_embedding=hidden, tokens=hidden,
                           frame_hop_seconds=self.frame_hop_seconds)


def _state(ckpt: dict) -> dict:
    return ckpt["model"] if isinstance(ckpt.get("model"), dict) else ckpt


def _is_cnn14(state: dict) -> bool:
    return "bn0.weight" in state and "conv_block6.conv2.weight" in state


def _looks_like_clip(ckpt: dict) -> bool:
    state = _state(ckpt)
    return _is_cnn14(state) and "fc_audioset.weight" in state


def _looks_like_sed(ckpt: dict) -> bool:
    state = _state(ckpt)
    return _is_cnn14(state) and ("fc_audioset.weight" in state or "att_block.att.weight" in state)


def _check_filterbank(state: dict) -> None:
    """Refuse a file whose torchlibrosa mel weights are not the ``panns`` frontend's (another rate, band count or range)."""
    stored = state.get("logmel_extractor.melW")
    expected = mel_banks(get_frontend("panns")).T
    if stored is not None and (tuple(stored.shape) != expected.shape or not np.allclose(stored.float().numpy(), expected, atol=1e-6)):
        raise ValueError(f"its mel filterbank (logmel_extractor.melW, {tuple(stored.shape)}) is not the 32-kHz, 64-band, "
                         "50-14000 Hz one of PANNs' released CNN14 files, and earmark converts those only.")


def _read(ckpt: dict, pooling: str) -> Mapped:
    state = _state(ckpt)
    _check_filterbank(state)
    dropped = [k for k in state if k.startswith(_FRONTEND_KEYS + _UNUSED)] + [k for k in ckpt if k != "model" and state is not ckpt]
    mapped = {re.sub(r"^conv_block(\d)\.", lambda m: f"blocks.{int(m.group(1)) - 1}.", k): v for k, v in state.items()
              if not k.startswith(_FRONTEND_KEYS + _UNUSED)}
    channels = tuple(state[f"conv_block{i}.conv1.weight"].shape[0] for i in range(1, 7))
    head = state["att_block.cla.weight"] if pooling == "att" else state["fc_audioset.weight"]
    classes = head.shape[0]
    overrides = {k: v for k, v in (("channels", channels), ("num_classes", classes)) if v != getattr(PANNsConfig(), k)}
    labels = audioset_labels() if classes == 527 else [f"class_{i}" for i in range(classes)]
    name = {"clip": "cnn14", "max": "cnn14_decision_max", "att": "cnn14_decision_att"}[pooling]
    return Mapped(name, overrides, mapped, labels, dropped=dropped, objective="detect", task="clip" if pooling == "clip" else "frame")


def convert_clip(ckpt: dict, **_: Any) -> Mapped:
    """audioset_tagging_cnn's Cnn14 (``Cnn14_mAP=0.431.pth``): clip logits of its 527 AudioSet classes."""
    return _read(ckpt, "clip")


def convert_sed(ckpt: dict, **_: Any) -> Mapped:
    """Cnn14_DecisionLevelMax (``fc_audioset``; Cnn14 stores the same keys, so ``--from`` decides) or ...Att (``att_block``)."""
    return _read(ckpt, "att" if "att_block.att.weight" in _state(ckpt) else "max")


register(TeacherFamily(
    "panns", lambda args: PANNs(build_config(PANNsConfig, args)),
    variants={
        "cnn14": {"frontend": "panns"},
        "cnn14_decision_max": {"frontend": "panns", "pooling": "max"},
        "cnn14_decision_att": {"frontend": "panns", "pooling": "att"},
    },
    formats={
        "panns": Converter(convert_clip, _looks_like_clip, "qiuqiangkong/audioset_tagging_cnn Cnn14 .pth ({model, iteration})"),
        "panns-sed": Converter(convert_sed, _looks_like_sed, "audioset_tagging_cnn Cnn14_DecisionLevelMax / ...Att .pth (320-ms frames)"),
    },
))
