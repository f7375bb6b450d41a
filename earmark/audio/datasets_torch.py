"""Torch datasets over manifests: waveforms and targets (features are computed batched by ``Frontend``)."""

from __future__ import annotations

import multiprocessing

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from earmark.audio.io import audio_seconds, load_audio, refuse_silence
from earmark.audio.labels import LabelSet
from earmark.audio.manifest import Clip, Manifest
from earmark.audio.spec import FrontendSpec

__all__ = ["collate"]  # public; audio's package stays torch-free, so they are named here

LONG_CLIP_SECONDS = 60.0


def fit_length(wave: np.ndarray, length: int, rng: np.random.Generator | None) -> tuple[np.ndarray, int]:
    """Crop (random with ``rng``, else centred) or zero-pad to ``length``; returns the wave and its start offset."""
    if wave.size >= length:
        start = int(rng.integers(0, wave.size - length + 1)) if rng is not None else (wave.size - length) // 2
        return wave[start:start + length], start
    return np.pad(wave, (0, length - wave.size)), 0


class Items:
    """A clip's decoded audio -> one item: the crop, its clip target (C,) and, with ``frame_hop``, frame targets (T', C)."""

    def __init__(self, labels: LabelSet, sample_rate: int, clip_seconds: float, frame_hop: float | None = None):
        self.labels, self.sample_rate, self.frame_hop = labels, sample_rate, frame_hop
        self.length = int(round(clip_seconds * sample_rate))
        self.n_frames = int(round(clip_seconds / frame_hop)) if frame_hop else 0

    def target(self, clip: Clip) -> torch.Tensor:
        target = torch.zeros(len(self.labels))
        for label in clip.labels:
            target[self.labels.index(label)] = 1.0
        return target

    def frame_target(self, clip: Clip, start_seconds: float) -> torch.Tensor:
        """A frame is active when its centre lies in [onset, offset)."""
        centres = start_seconds + (np.arange(self.n_frames) + 0.5) * self.frame_hop
        target = np.zeros((self.n_frames, len(self.labels)), np.float32)
        for onset, offset, label in clip.events:
            target[(centres >= onset) & (centres < offset), self.labels.index(label)] = 1.0
        return torch.from_numpy(target)

    def __call__(self, clip: Clip, wave: np.ndarray, rng: np.random.Generator | None, offset: int = 0) -> dict:
        """``wave`` is the clip's audio from sample ``offset`` on (a long clip's window)."""
        wave, start = fit_length(wave, self.length, rng)
        item = {"id": clip.id, "wave": torch.from_numpy(np.ascontiguousarray(wave))}
        if not self.frame_hop:
            return {**item, "target": self.target(clip)}
        frames = self.frame_target(clip, (offset + start) / self.sample_rate)
        return {**item, "target": frames.amax(dim=0), "frame_target": frames}


class EpochCounter:
    """The current epoch in shared memory: DataLoader workers that persist across epochs see ``set_epoch``."""

    def __init__(self):
        self._value = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn").Value("q", 0)

    def set(self, epoch: int) -> None:
        self._value.value = epoch

    def get(self) -> int:
        return int(self._value.value)


class ClipDataset(Dataset):
    """(id, wave (N,), target (C,)) items: random crops for training, deterministic centre crops for evaluation."""

    def __init__(self, manifest: Manifest, sample_rate: int, clip_seconds: float, train: bool = False, seed: int = 0,
                 frame_hop: float | None = None, keep_decoded: bool = True):
        self.manifest, self.sample_rate, self.train, self.seed = manifest, sample_rate, train, seed
        self.keep_decoded = keep_decoded  # False for one pass over a corpus (memory stays flat)
        self.items = Items(manifest.labels, sample_rate, clip_seconds, frame_hop)
        self.epoch = EpochCounter()
        self._cache: dict[int, np.ndarray | int] = {}  # a short clip's wave, or a long clip's length in samples

    def __len__(self) -> int:
        return len(self.manifest.clips)

    def set_epoch(self, epoch: int) -> None:
        """Training crops depend on (seed, epoch, index) only, so a resumed run crops as the original."""
        self.epoch.set(epoch)

    def window(self, index: int, rng: np.random.Generator | None) -> tuple[np.ndarray, int]:
        """The clip's audio and the sample it starts at: a short clip whole (kept in memory when loading in-process and
        ``keep_decoded``), a clip longer than ``LONG_CLIP_SECONDS`` only the crop's window (random with ``rng``, else centred)."""
        path = self.manifest.clips[index].path
        held = self._cache.get(index)
        if held is None:
            seconds = audio_seconds(path)
            held = (round(seconds * self.sample_rate) if seconds > LONG_CLIP_SECONDS
                    else refuse_silence(str(path), load_audio(path, self.sample_rate)))
            if not isinstance(held, np.ndarray) or (self.keep_decoded and get_worker_info() is None):  # workers decode every time
                self._cache[index] = held
        if isinstance(held, np.ndarray):
            return held, 0
        length = self.items.length
        start = int(rng.integers(0, held - length + 1)) if rng is not None else (held - length) // 2
        return load_audio(path, self.sample_rate, offset=start / self.sample_rate, seconds=length / self.sample_rate), start

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng((self.seed, self.epoch.get(), index)) if self.train else None
        wave, offset = self.window(index, rng)
        return self.items(self.manifest.clips[index], wave, rng, offset)


class FrameDataset(ClipDataset):
    """Adds frame targets (T', C) on a grid of ``frame_hop_seconds``: a frame is active when its centre is in [onset, offset)."""

    def __init__(self, manifest: Manifest, spec: FrontendSpec, clip_seconds: float, frame_hop_seconds: float,
                 train: bool = False, seed: int = 0):
        super().__init__(manifest, spec.sample_rate, clip_seconds, train, seed, frame_hop_seconds)


def collate(items: list[dict]) -> dict:
    """Stack tensors; anything else (ids, the clips placed in a mixture) stays a list."""
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch
