"""TF-SepNet (Cai et al., ICASSP 2024; DCASE 2024 Task 1 system): time-frequency separate convolutions.

Structure (and so the published parameter and MAC counts) follows the authors' DCASE'24 code: a
4x down-sampling stem, TF-SepConvs blocks placed by a depth configuration, ResNorm between stages,
a 1x1-conv classifier with global mean. The frame-level variant for sound event detection keeps the
time axis after the stem (frequency-only pooling) and pools clip scores from frame scores.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from earmark.audio.spec import get_frontend
from earmark.engine.outputs import ModelOutput

# Depth configurations: numbers are block widths in units of C, "N" a norm layer, "M" a 2x2 max-pool.
DEPTH_CONFIGS: dict[int, list] = {
    17: ["N", 1, 1, "N", "M", 1.5, 1.5, "N", "M", 2, 2, "N", "M", 2.5, 2.5, 2.5, "N"],
    16: ["N", 1, 1, "N", "M", 1.5, 1.5, "N", "M", 2, 2, "N", 2.5, 2.5, 2.5, "N"],
}


class ConvBnRelu(nn.Sequential):
    """Bias-free conv, BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int] = 1, stride: int | tuple[int, int] = 1, groups: int = 1):
        k = (kernel, kernel) if isinstance(kernel, int) else kernel
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, padding=(k[0] // 2, k[1] // 2), groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


def freq_instance_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``IN_freq(x) = (x - mean) / sqrt(var + eps)`` over (channel, time) per frequency bin, var unbiased as in the paper's code.

    Computed as one InstanceNormalization over (B, F, C, T), which exports as one ONNX op instead of ~10. IN uses the
    biased variance ``v_b = v (n - 1) / n`` (n = C T), hence ``IN_freq(x) = sqrt(k) IN_{eps k}(x)`` with ``k = (n - 1) / n``.
    """
    n = x.shape[1] * x.shape[3]
    k = (n - 1) / n
    scale = x.new_full((x.shape[2],), math.sqrt(k))  # IN's own scale input: no separate Mul in the graph
    return F.instance_norm(x.transpose(1, 2), weight=scale, eps=eps * k).transpose(1, 2)


class ResNorm(nn.Module):
    """``lambda * x + IN_freq(x)``: x normalised over (channel, time) per frequency bin; no parameters."""

    def __init__(self, channels: int, lamb: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.lamb, self.eps = lamb, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lamb * x + freq_instance_norm(x, self.eps)


class AdaResNorm(nn.Module):
    """``gamma * (rho * x + (1 - rho) * IN_freq(x)) + beta`` with rho (init 0.5), gamma, beta per channel."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.rho = nn.Parameter(torch.full((1, channels, 1, 1), 0.5))
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rho = self.rho.clamp(0, 1)
        return self.gamma * (rho * x + (1 - rho) * freq_instance_norm(x, self.eps)) + self.beta


class ChannelShuffle(nn.Module):
    """The reference's ``ShuffleLayer(groups)``: view channels as (c / groups, groups), swap, flatten.

    Output channel ``j * (c / groups) + i`` is input channel ``i * groups + j``; with groups = c / 2 (TF-SepConvs)
    the two input halves are interleaved: output ``2 j + i`` is input ``i * c / 2 + j``.
    """

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        return x.reshape(b, c // self.groups, self.groups, f, t).transpose(1, 2).reshape(b, c, f, t)


class TFSepConvs(nn.Module):
    """Transition 1x1 (if widths differ) -> shuffle -> split: a frequency path and a time path, each broadcast back."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, dropout: float = 0.1):
        super().__init__()
        half = cout // 2
        self.transition = ConvBnRelu(cin, cout) if cin != cout else nn.Identity()
        self.shuffle = ChannelShuffle(half)
        self.freq_dw = ConvBnRelu(half, half, (kernel, 1), groups=half)
        self.freq_pw = ConvBnRelu(half, half)
        self.time_dw = ConvBnRelu(half, half, (1, kernel), groups=half)
        self.time_pw = ConvBnRelu(half, half)
        self.dropout = nn.Dropout(dropout)
        self.half = half

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shuffle(self.transition(x))
        freq, time = x[:, : self.half], x[:, self.half:]
        freq_out = self.dropout(self.freq_pw(self.freq_dw(freq).mean(dim=2, keepdim=True))) + freq
        time_out = self.dropout(self.time_pw(self.time_dw(time).mean(dim=3, keepdim=True))) + time
        return torch.cat([freq_out, time_out], dim=1)


def fold_channel_shuffles(model: nn.Module) -> nn.Module:
    """A copy of ``model`` where each shuffle that follows a transition conv is folded into it, for export.

    The shuffle permutes channels, and BatchNorm and ReLU act per channel, so permuting the transition conv's output
    channels (and its BatchNorm's) computes the same tensor without the Reshape/Transpose/Reshape and the layout
    reorders they cost ONNX Runtime. Shuffles after a block without a transition (widths equal) stay.
    """
    model = copy.deepcopy(model)
    for block in model.modules():
        if not isinstance(block, TFSepConvs) or not isinstance(block.transition, ConvBnRelu):
            continue
        conv, bn = block.transition[0], block.transition[1]
        groups = block.shuffle.groups
        order = torch.arange(conv.out_channels).reshape(-1, groups).t().reshape(-1)  # output k reads input order[k]
        with torch.no_grad():
            conv.weight.copy_(conv.weight[order])
            for tensor in (conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var):
                if tensor is not None:
                    tensor.copy_(tensor[order])
        block.shuffle = nn.Identity()
    return model


class TFSepNet(nn.Module):
    """TF-SepNet over features (B, 1, n_mels, frames); ``task="frame"`` keeps time and adds frame scores."""

    def __init__(self, num_classes: int, base_channels: int = 64, depth: int = 17, kernel_size: int = 3,
                 dropout: float = 0.1, norm: str = "resnorm", task: str = "clip", frontend: str = "tfsepnet",
                 scene_classes: int = 0):
        super().__init__()
        if depth not in DEPTH_CONFIGS:
            raise ValueError(f"TF-SepNet depth {depth} is not defined; choose one of {sorted(DEPTH_CONFIGS)}.")
        if norm not in ("resnorm", "adaresnorm"):
            raise ValueError(f"unknown norm {norm!r}; choose 'resnorm' or 'adaresnorm'.")
        self.task, self.frontend = task, get_frontend(frontend)
        c = base_channels
        self.stem = nn.Sequential(ConvBnRelu(1, c // 2, 3, 2), ConvBnRelu(c // 2, 2 * c, 3, 2, groups=c // 2))
        norm_cls = ResNorm if norm == "resnorm" else AdaResNorm
        pool = (2, 1) if task == "frame" else (2, 2)  # the frame model pools frequency only
        layers, width = [], 2 * c
        for item in DEPTH_CONFIGS[depth]:
            if item == "N":
                layers.append(norm_cls(width))
            elif item == "M":
                layers.append(nn.MaxPool2d(pool, pool))
            else:
                layers.append(TFSepConvs(width, int(item * c), kernel_size, dropout))
                width = int(item * c)
        self.body = nn.Sequential(*layers)
        self.width = width
        self.classifier = nn.Conv2d(width, num_classes, 1)
        if task == "frame":
            self.attention = nn.Conv1d(width, num_classes, 1)
        self.scene_head = nn.Linear(width, scene_classes) if scene_classes else None  # scenes beside the events

    @property
    def frame_hop_seconds(self) -> float:
        """Output frame step: the stem halves time twice (frontend hop x 4)."""
        return 4 * self.frontend.hop_seconds

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.features(x)
        embedding = h.mean(dim=(2, 3))
        scenes = self.scene_head(embedding) if self.scene_head is not None else None
        if self.task == "clip":
            return ModelOutput(clip_logits=self.classifier(h).mean(dim=(2, 3)), embedding=embedding, scene_logits=scenes)
        frame_logits = self.classifier(h).mean(dim=2)  # (B, classes, T')
        weights = torch.softmax(self.attention(h.mean(dim=2)), dim=2)  # attention pooling over time
        clip_logits = (weights * frame_logits).sum(dim=2)
        return ModelOutput(clip_logits=clip_logits, frame_logits=frame_logits.transpose(1, 2), embedding=embedding,
                           frame_hop_seconds=self.frame_hop_seconds, scene_logits=scenes)
