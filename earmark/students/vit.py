"""Small audio ViT students: patches of the log-mel, pre-LN transformer, clip (mean or cls) and frame heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from earmark.audio.spec import get_frontend
from earmark.engine.outputs import ModelOutput
from earmark.nn import Block


def sincos_2d(dim: int, grid_f: int, grid_t: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine positions (MAE style), (1, grid_f * grid_t, dim), frequency-major."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    f, t = torch.meshgrid(torch.arange(grid_f, dtype=torch.float64), torch.arange(grid_t, dtype=torch.float64), indexing="ij")
    parts = [torch.sin(f.reshape(-1, 1) * omega), torch.cos(f.reshape(-1, 1) * omega),
             torch.sin(t.reshape(-1, 1) * omega), torch.cos(t.reshape(-1, 1) * omega)]
    pos = torch.cat(parts, dim=1)
    return F.pad(pos, (0, dim - pos.shape[1])).float().unsqueeze(0)


def _legacy_mlp_keys(module: nn.Module, state: dict, prefix: str, *_: object) -> None:
    """Rename the MLP keys of students saved before the block moved to ``earmark.nn`` (``mlp.0``/``mlp.2`` -> ``fc1``/``fc2``)."""
    for key in [k for k in state if k.startswith(prefix + "blocks.")]:
        new = key.replace(".mlp.0.", ".mlp.fc1.").replace(".mlp.2.", ".mlp.fc2.")
        if new != key:
            state[new] = state.pop(key)


class AudioViT(nn.Module):
    """ViT over features (B, 1, n_mels, frames): non-overlapping patches, learned or sin-cos positions.

    Learned positions are stored for ``n_mels x frames`` and bilinearly interpolated to other lengths.
    The frame head scores each time column of patches (mean over frequency), giving frames of
    ``patch`` feature hops.
    """

    def __init__(self, num_classes: int, dim: int = 192, depth: int = 12, heads: int = 3, patch: int = 16,
                 n_mels: int = 256, frames: int = 64, positions: str = "learned", pooling: str = "mean",
                 task: str = "clip", frontend: str = "cpjku", scene_classes: int = 0):
        super().__init__()
        if positions not in ("learned", "sincos") or pooling not in ("mean", "cls"):
            raise ValueError("positions must be 'learned' or 'sincos', pooling 'mean' or 'cls'.")
        self.task, self.frontend, self.pooling, self.patch = task, get_frontend(frontend), pooling, patch
        self.grid = (n_mels // patch, frames // patch)
        self.patch_embed = nn.Conv2d(1, dim, patch, patch)
        init = sincos_2d(dim, *self.grid)
        self.pos_embed = nn.Parameter(init, requires_grad=positions == "learned")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pooling == "cls" else None
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        self.scene_head = nn.Linear(dim, scene_classes) if scene_classes else None  # scenes beside the events
        self.register_load_state_dict_pre_hook(_legacy_mlp_keys)

    @property
    def frame_hop_seconds(self) -> float:
        return self.patch * self.frontend.hop_seconds

    def _positions(self, grid_f: int, grid_t: int) -> torch.Tensor:
        if (grid_f, grid_t) == self.grid:
            return self.pos_embed
        pos = self.pos_embed.reshape(1, *self.grid, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(grid_f, grid_t), mode="bilinear", align_corners=False)
        return pos.permute(0, 2, 3, 1).reshape(1, grid_f * grid_t, -1)

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Encoded patch tokens (B, F' * T', dim), frequency-major, and the grid."""
        x = self.patch_embed(x)
        grid_f, grid_t = x.shape[2], x.shape[3]
        x = x.flatten(2).transpose(1, 2) + self._positions(grid_f, grid_t)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm(self.blocks(x))
        return x, grid_f, grid_t

    def forward(self, x: torch.Tensor) -> ModelOutput:
        tokens, grid_f, grid_t = self.tokens(x)
        embedding = tokens[:, 0] if self.cls_token is not None else tokens.mean(dim=1)
        out = ModelOutput(clip_logits=self.head(embedding), embedding=embedding,
                          scene_logits=self.scene_head(embedding) if self.scene_head is not None else None)
        if self.task == "frame":
            patches = tokens[:, 1:] if self.cls_token is not None else tokens
            columns = patches.reshape(x.shape[0], grid_f, grid_t, -1).mean(dim=1)  # (B, T', dim)
            out.frame_logits, out.frame_hop_seconds = self.head(columns), self.frame_hop_seconds
        return out

