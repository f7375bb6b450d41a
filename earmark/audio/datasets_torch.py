"""Torch datasets over manifests: waveforms and targets (features are computed batched by ``Frontend``)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from earmark.audio.io import load_audio
from earmark.audio.manifest import Clip, Manifest
from earmark.audio.spec import FrontendSpec


def fit_length(wave: np.ndarray, length: int, rng: np.random.Generator | None) -> tuple[np.ndarray, int]:
    """Crop (random with ``rng``, else centred) or zero-pad to ``length``; returns the wave and its start offset."""
    if wave.size >= length:
        start = int(rng.integers(0, wave.size - length + 1)) if rng is not None else (wave.size - length) // 2
        return wave[start:start + length], start
    return np.pad(wave, (0, length - wave.size)), 0


class ClipDataset(Dataset):
    """(id, wave (N,), target (C,)) items: random crops for training, deterministic centre crops for evaluation."""

    def __init__(self, manifest: Manifest, sample_rate: int, clip_seconds: float, train: bool = False, seed: int = 0):
        self.manifest, self.sample_rate, self.train = manifest, sample_rate, train
        self.length = int(round(clip_seconds * sample_rate))
        self.seed, self.epoch = seed, 0
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.manifest.clips)

    def set_epoch(self, epoch: int) -> None:
        """Training crops depend on (seed, epoch, index) only, so a resumed run crops as the original."""
        self.epoch = epoch

    def target(self, clip: Clip) -> torch.Tensor:
        labels = self.manifest.labels
        target = torch.zeros(len(labels))
        for label in clip.labels:
            target[labels.index(label)] = 1.0
        return target

    def wave(self, index: int) -> np.ndarray:
        if index not in self._cache:
            self._cache[index] = load_audio(self.manifest.clips[index].path, self.sample_rate)
        return self._cache[index]

    def __getitem__(self, index: int) -> dict:
        clip = self.manifest.clips[index]
        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.train else None
        wave, _ = fit_length(self.wave(index), self.length, rng)
        return {"id": clip.id, "wave": torch.from_numpy(np.ascontiguousarray(wave)), "target": self.target(clip)}


class FrameDataset(ClipDataset):
    """Adds frame targets (T', C) on a grid of ``frame_hop_seconds``: a frame is active when its centre is in [onset, offset)."""

    def __init__(self, manifest: Manifest, spec: FrontendSpec, clip_seconds: float, frame_hop_seconds: float,
                 train: bool = False, seed: int = 0):
        super().__init__(manifest, spec.sample_rate, clip_seconds, train, seed)
        self.frame_hop = frame_hop_seconds
        self.n_frames = int(round(clip_seconds / frame_hop_seconds))

    def frame_target(self, clip: Clip, start_seconds: float) -> torch.Tensor:
        centres = start_seconds + (np.arange(self.n_frames) + 0.5) * self.frame_hop
        target = np.zeros((self.n_frames, len(self.manifest.labels)), np.float32)
        for onset, offset, label in clip.events:
            target[(centres >= onset) & (centres < offset), self.manifest.labels.index(label)] = 1.0
        return torch.from_numpy(target)

    def __getitem__(self, index: int) -> dict:
        clip = self.manifest.clips[index]
        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.train else None
        wave, start = fit_length(self.wave(index), self.length, rng)
        frames = self.frame_target(clip, start / self.sample_rate)
        return {"id": clip.id, "wave": torch.from_numpy(np.ascontiguousarray(wave)),
                "target": frames.amax(dim=0), "frame_target": frames}


def collate(items: list[dict]) -> dict:
    """Stack tensors; anything else (ids, the clips placed in a mixture) stays a list."""
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch
