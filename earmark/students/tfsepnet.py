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
from torch.nn.utils.fusion import fuse_conv_bn_eval

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

    Computed as one InstanceNormalization over (B, F, T, C), which exports as one ONNX op instead of ~10. IN uses the
    biased variance ``v_b = v (n - 1) / n`` (n = C T), hence ``IN_freq(x) = sqrt(k) IN_{eps k}(x)`` with ``k = (n - 1) / n``.
    Channels go last rather than beside time: ONNX Runtime turns NCHW -> NHWC into one reorder out of its blocked
    (NCHWc) conv layout and NHWC -> NCHW into a 2-D transpose, where (B, F, C, T) costs two strided transposes (measured
    in docs/export.md).
    """
    n = x.shape[1] * x.shape[3]
    k = (n - 1) / n
    scale = x.new_full((x.shape[2],), math.sqrt(k))  # IN's own scale input: no separate Mul in the graph
    return F.instance_norm(x.permute(0, 2, 3, 1), weight=scale, eps=eps * k).permute(0, 3, 1, 2)


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
        if not (isinstance(block, TFSepConvs) and isinstance(block.transition, ConvBnRelu) and isinstance(block.shuffle, ChannelShuffle)):
            continue  # no transition, or folded already (quantized students)
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


NCHWC_CHANNELS = 8  # ONNX Runtime's blocked conv layout groups channels by 8 (AVX2) or 16 (AVX-512); see runtime_layout
NCHWC_DEPTHWISE_CHANNELS = 4  # ... and takes a depthwise conv there when its channels are a multiple of 4 (padding the rest)


class RuntimeTFSepConvs(TFSepConvs):
    """TF-SepConvs computing the same function in ops that ONNX Runtime's CPU kernels run fast (``runtime_layout``).

    - The broadcast residual adds become a nearest upsample (an exact copy) plus an add of equal shapes: ONNX Runtime
      runs a broadcast over the short time axis element by element.
    - With ``pooled``, the frequency and time means are average pools, which stay in ONNX Runtime's blocked (NCHWc)
      layout where a mean leaves it; worth it only where every tensor can stay there (``runtime_layout``). With
      ``mean_convs`` they are depthwise convs of weights ``1 / n`` (``_depthwise_mean``), which stay there for widths
      that are a multiple of ``NCHWC_DEPTHWISE_CHANNELS`` only.
    - With ``joint_depthwise``, the frequency (k x 1) and time (1 x k) depthwise convs run as one k x k depthwise conv
      over both halves, each kernel padded with zeros (the zero taps add exact zeros). ONNX Runtime takes a depthwise
      conv into its blocked layout only when its channels are a multiple of ``NCHWC_DEPTHWISE_CHANNELS``; a half of
      30 or 50 channels otherwise runs through a generic path about 3x slower than the joint conv of 60 or 100.
    """

    pooled: bool
    mean_convs: bool
    joint_depthwise: nn.Conv2d | None  # set by runtime_layout (a class default would hide the registered module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shuffle(self.transition(x))
        freq, time = x[:, : self.half], x[:, self.half:]
        if self.joint_depthwise is not None:
            both = F.relu(self.joint_depthwise(x))
            freq_dw, time_dw = both[:, : self.half], both[:, self.half:]
        else:
            freq_dw, time_dw = self.freq_dw(freq), self.time_dw(time)
        f, t = int(freq.shape[2]), int(time.shape[3])  # sizes are fixed at export: constants in the graph
        if self.pooled:
            freq_mean, time_mean = F.avg_pool2d(freq_dw, (f, 1)), F.avg_pool2d(time_dw, (1, t))
        elif self.mean_convs:
            freq_mean, time_mean = _depthwise_mean(freq_dw, (f, 1)), _depthwise_mean(time_dw, (1, t))
        else:
            freq_mean, time_mean = freq_dw.mean(dim=2, keepdim=True), time_dw.mean(dim=3, keepdim=True)
        freq_out = F.interpolate(self.freq_pw(freq_mean), scale_factor=(float(f), 1.0), mode="nearest") + freq
        time_out = F.interpolate(self.time_pw(time_mean), scale_factor=(1.0, float(t)), mode="nearest") + time
        return torch.cat([freq_out, time_out], dim=1)


def _depthwise_mean(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """The mean over ``window`` (all of one axis) as a depthwise conv of weights ``1 / n``, which ONNX Runtime runs in its
    blocked layout where a ReduceMean or (for widths not a multiple of 8) an average pool leaves it."""
    channels = int(x.shape[1])
    weight = torch.full((channels, 1, *window), 1.0 / (window[0] * window[1]), dtype=x.dtype, device=x.device)
    return F.conv2d(x, weight, groups=channels)


def _folded(layers: nn.Sequential) -> nn.Conv2d:
    """The conv of a conv-BatchNorm-ReLU with its BatchNorm folded in; a quantized student's (BatchNorm folded already) as it is."""
    conv, bn = layers[0], layers[1]
    return fuse_conv_bn_eval(conv, bn) if isinstance(bn, nn.BatchNorm2d) else conv


def _regrouped(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor, sources: list[tuple[nn.Conv2d, torch.Tensor]]) -> nn.Conv2d:
    """``conv`` holding ``weight`` and ``bias``, its output channels taken from the given output channels of ``sources``.

    Where the sources store their weights on an INT8 grid (a weight-only quantized student, ``channel_scales``), ``conv``
    comes back on the same grid, one scale per output channel: the weights regrouped, each with its own scale.
    """
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    scales = [getattr(source, "channel_scales", lambda: None)() for source, _ in sources]
    if any(scale is None for scale in scales):
        return conv
    return type(sources[0][0]).on_grid(conv, torch.cat([scale[rows] for scale, (_, rows) in zip(scales, sources)]))


def _joint_depthwise(block: TFSepConvs) -> nn.Conv2d:
    """The block's two depthwise convs (BatchNorm folded) as one k x k depthwise conv over both halves, zeros elsewhere."""
    freq, time = _folded(block.freq_dw), _folded(block.time_dw)
    k, h = freq.kernel_size[0], block.half
    with torch.no_grad():
        weight = freq.weight.new_zeros(2 * h, 1, k, k)
        weight[:h, :, :, k // 2] = freq.weight[:, :, :, 0]
        weight[h:, :, k // 2, :] = time.weight[:, :, 0, :]
    rows = torch.arange(h)
    return _regrouped(nn.Conv2d(2 * h, 2 * h, k, padding=k // 2, groups=2 * h), weight, torch.cat([freq.bias, time.bias]),
                      [(freq, rows), (time, rows)])


class SplitStemConv(nn.Module):
    """The stem's grouped conv (each of its ``c`` input channels feeds ``m`` outputs), BatchNorm folded, ReLU, as
    ``m / r`` depthwise convs over ``r`` copies of its input (``r c`` channels, which the stem's first conv computes).

    Depthwise conv ``q`` computes, from copy ``p`` of input channel ``g``, the grouped conv's output ``g m + q r + p``;
    the results are concatenated, and ``channel_order`` says which grouped-conv channel each output channel holds.
    ONNX Runtime runs a grouped conv with one input channel per group through a generic im2col path, several times
    slower than depthwise convs in its blocked layout, which takes ``r c`` channels in multiples of ``NCHWC_CHANNELS``.
    """

    def __init__(self, block: ConvBnRelu, copies: int):
        super().__init__()
        conv = _folded(block)
        c, self.copies = conv.in_channels, copies
        m = conv.out_channels // c
        outputs = torch.arange(conv.out_channels).reshape(c, m)  # outputs[g, j] = g m + j
        self.convs, order = nn.ModuleList(), []
        for q in range(m // copies):
            rows = torch.cat([outputs[:, q * copies + p] for p in range(copies)])
            dw = nn.Conv2d(copies * c, copies * c, conv.kernel_size, conv.stride, conv.padding, groups=copies * c)
            self.convs.append(_regrouped(dw, conv.weight[rows], conv.bias[rows], [(conv, rows)]))
            order.append(rows)
        self.channel_order = torch.cat(order)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(dw(x)) for dw in self.convs], dim=1)


def _stem_copies(model: TFSepNet) -> int:
    """How many copies of the stem's first conv output make its grouped conv's split blocked-layout friendly (0: none)."""
    grouped = model.stem[-1][0]
    c, m = grouped.in_channels, grouped.out_channels // grouped.in_channels
    if not (1 < grouped.groups == c and m > 1):
        return 0
    return next((r for r in range(1, m + 1) if m % r == 0 and r * c % NCHWC_CHANNELS == 0), 0)


def _split_stem(model: TFSepNet, copies: int) -> None:
    """Replace the stem's grouped conv by a ``SplitStemConv`` and relabel its channels up to the first conv that reads them.

    With ``copies`` > 1 the stem's first conv computes each of its channels that many times (its weights repeated).
    ResNorm, AdaResNorm (its per-channel parameters permuted) and max-pooling act on each channel alike, so the new
    channel order passes through them; the first transition conv absorbs it in its input weights. Without such a
    conv before anything else the stem is left as it is.
    """
    for layer in model.body:
        if isinstance(layer, TFSepConvs) and isinstance(layer.transition, ConvBnRelu):
            break
        if not isinstance(layer, (ResNorm, AdaResNorm, nn.MaxPool2d)):
            return
    else:
        return
    split = SplitStemConv(model.stem[-1].eval(), copies)
    order = split.channel_order
    with torch.no_grad():
        for norm in model.body:
            if norm is layer:
                break
            if isinstance(norm, AdaResNorm):
                for p in (norm.rho, norm.gamma, norm.beta):
                    p.copy_(p[:, order])
        weight = layer.transition[0].weight
        weight.copy_(weight[:, order])
    if copies > 1:
        conv = _folded(model.stem[0].eval())
        rows = torch.arange(conv.out_channels).repeat(copies)
        wide = nn.Conv2d(conv.in_channels, len(rows), conv.kernel_size, conv.stride, conv.padding, groups=conv.groups)
        model.stem[0] = nn.Sequential(_regrouped(wide, conv.weight[rows], conv.bias[rows], [(conv, rows)]), nn.ReLU())
    model.stem[-1] = split


def runtime_layout(model: nn.Module) -> nn.Module:
    """A copy of ``model`` computing the same function in the ops ONNX Runtime's CPU kernels run fastest, for export.

    Channel shuffles after transition convs are folded (``fold_channel_shuffles``) and every block broadcasts its
    residuals as ``RuntimeTFSepConvs`` does. ONNX Runtime's blocked conv layout (NCHWc) takes channel counts in multiples
    of ``NCHWC_CHANNELS``: the stem's grouped conv is split into depthwise convs of such widths (``SplitStemConv``), and
    where every block's half is one, the blocks pool in that layout. Blocks whose halves are not a multiple of
    ``NCHWC_DEPTHWISE_CHANNELS`` run their depthwise convs jointly, and the others without pools take their means as
    depthwise convs. tfsepnet64 (stem 32, halves 32, 48, 64, 80) gets four 32-channel stem convs and the pools;
    tfsepnet40 (stem 20, halves 20, 30, 40, 50) two 40-channel stem convs over its first conv computed twice, joint
    depthwise convs in its 30- and 50-channel halves and mean convs in the others. Each rewrite was measured
    (docs/export.md). Models other than TF-SepNet come back as a plain copy.

    A weight-only quantized student (scope weights, BatchNorm folded, weights baked on their INT8 grid by ``export_ready``)
    gets the same rewrites: its regrouped convs keep each weight's INT8 value and scale (``_regrouped``), the joint convs'
    zero taps are exact INT8 zeros, and the mean kernels are float constants as in a float model.
    """
    model = fold_channel_shuffles(model)
    if not isinstance(model, TFSepNet):
        return model
    copies = _stem_copies(model)
    if copies:
        _split_stem(model, copies)
    blocks = [m for m in model.modules() if type(m) is TFSepConvs]
    pooled = all(block.half % NCHWC_CHANNELS == 0 for block in blocks)
    for block in blocks:
        joint = block.half % NCHWC_DEPTHWISE_CHANNELS and 2 * block.half % NCHWC_DEPTHWISE_CHANNELS == 0
        block.joint_depthwise = _joint_depthwise(block.eval()) if joint else None
        block.__class__ = RuntimeTFSepConvs
        block.pooled = pooled
        block.mean_convs = not pooled and block.half % NCHWC_DEPTHWISE_CHANNELS == 0
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
