"""A causal CRNN for streaming sound event detection: it never looks ahead, so it runs hop by hop with state.

The stem turns every ``STEP`` feature frames into one output frame (a strided conv without overlap in time, so it
needs no state); each block is a depthwise conv that sees the current and the previous ``kernel - 1`` frames (its
state: those input frames), a pointwise conv and a frequency max-pool; a GRU over time (its state: the hidden
vector) and a per-frame classifier follow. BatchNorm uses running statistics only, so nothing normalises over time.

``forward`` runs a whole sequence from zero state, as training and the offline path do; ``stream`` runs a chunk of
frames from a given state and returns the new state: the same function, cut anywhere on a ``STEP`` boundary.
"""

from __future__ import annotations

import torch
from torch import nn

from earmark.audio.spec import get_frontend
from earmark.engine.outputs import ModelOutput

STEP = 4  # feature frames per output frame (62.5 ms with the cpjku frontend's 15.625 ms hop)


class CausalSepBlock(nn.Module):
    """Depthwise conv over (frequency, the last ``kernel`` frames), pointwise conv, BN + ReLU each, 2x frequency max-pool."""

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__()
        self.past = kernel - 1
        self.depthwise = nn.Sequential(nn.Conv2d(cin, cin, kernel, padding=(kernel // 2, 0), groups=cin, bias=False),
                                       nn.BatchNorm2d(cin), nn.ReLU())
        self.pointwise = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
        self.pool = nn.MaxPool2d((2, 1))

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, F, T) with the ``past`` (B, C, F, kernel - 1) frames before it -> output and the new past."""
        joined = torch.cat([past, x], dim=3)
        return self.pool(self.pointwise(self.depthwise(joined))), joined[:, :, :, -self.past:]


class CausalCRNN(nn.Module):
    """Causal conv blocks + GRU over (B, 1, n_mels, frames); one output frame per ``STEP`` input frames."""

    causal = True
    step_frames = STEP  # the shortest hop it streams: feature frames per output frame

    def __init__(self, num_classes: int, channels: tuple[int, ...] = (32, 32, 48, 64, 64), hidden: int = 64,
                 kernel: int = 3, dropout: float = 0.1, task: str = "frame", frontend: str = "cpjku"):
        super().__init__()
        self.task, self.frontend = task, get_frontend(frontend)
        stem = channels[0]
        self.stem = nn.Sequential(nn.Conv2d(1, stem, (5, STEP), (2, STEP), padding=(2, 0), bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU(), nn.MaxPool2d((2, 1)))
        self.blocks = nn.ModuleList(CausalSepBlock(cin, cout, kernel) for cin, cout in zip(channels, channels[1:]))
        self.bins = self.frontend.n_mels // 4 // 2 ** len(self.blocks)  # frequency bins left for the GRU
        if self.bins < 1:
            raise ValueError(f"{len(self.blocks)} blocks halve {self.frontend.n_mels} mel bins to nothing; use fewer channels entries.")
        self.gru = nn.GRU(channels[-1] * self.bins, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)
        self.attention = nn.Linear(hidden, num_classes)  # clip score: attention pooling of the frame scores

    @property
    def frame_hop_seconds(self) -> float:
        return STEP * self.frontend.hop_seconds

    def initial_state(self, batch: int = 1) -> list[torch.Tensor]:
        """Zero state: each block's past frames, then the GRU's hidden vector (1, B, hidden)."""
        states, bins = [], self.frontend.n_mels // 4
        for block in self.blocks:
            states.append(torch.zeros(batch, block.depthwise[0].in_channels, bins, block.past))
            bins //= 2
        return [*states, torch.zeros(1, batch, self.gru.hidden_size)]

    def stream(self, x: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Frame logits (B, T // STEP, classes) of a chunk after ``state``, and the state after it."""
        frame_logits, _, new_state = self._run(x, state)
        return frame_logits, new_state

    def _run(self, x: torch.Tensor, state) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        h = self.stem(x[..., : x.shape[-1] // STEP * STEP])
        new_state = []
        for block, past in zip(self.blocks, state):
            h, past = block(h, past)
            new_state.append(past)
        h, hidden = self.gru(h.flatten(1, 2).transpose(1, 2), state[-1])
        return self.classifier(self.dropout(h)), h, [*new_state, hidden]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        frame_logits, h, _ = self._run(x, [s.to(x) for s in self.initial_state(x.shape[0])])
        weights = torch.softmax(self.attention(h), dim=1)
        clip_logits = (weights * frame_logits).sum(dim=1)
        embedding = h.mean(dim=1)
        if self.task == "clip":
            return ModelOutput(clip_logits=clip_logits, embedding=embedding)
        return ModelOutput(clip_logits=clip_logits, frame_logits=frame_logits, embedding=embedding,
                           frame_hop_seconds=self.frame_hop_seconds)
