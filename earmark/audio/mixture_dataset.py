"""Training on the fly on soundscapes: every epoch draws new mixtures of the clips over the backgrounds."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from earmark.audio.datasets_torch import EpochCounter
from earmark.audio.mixing import SoundscapeMixer

__all__ = ["MixtureDataset"]  # public; audio's package stays torch-free, so it is named here


class MixtureDataset(Dataset):
    """Item i of epoch e: a soundscape of the window's length, seeded by (seed, e, i), whose first event is clip i.

    Items carry the wave, the clip target (a label is on when one of its events is in the window), the frame
    target on a ``frame_hop_seconds`` grid (frame centre inside an event) when one is given, and ``event_ids``,
    the clips placed (for teacher outputs cached per clip). ``train=False`` draws the same soundscapes every time.
    With ``scenes`` (background path -> scene, one of ``scene_labels``) items also carry ``scene_target``, the
    one-hot scene of the soundscape's background.
    """

    def __init__(self, mixer: SoundscapeMixer, frame_hop_seconds: float | None = None, train: bool = False, seed: int = 0,
                 scenes: dict[str, str] | None = None, scene_labels: list[str] = ()):
        self.mixer, self.frame_hop, self.train, self.seed = mixer, frame_hop_seconds, train, seed
        self.scenes, self.scene_labels = scenes, list(scene_labels)
        self.epoch = EpochCounter()  # shared with DataLoader workers that persist across epochs
        self.labels = mixer.clips.labels
        self.n_frames = int(round(mixer.settings.duration / frame_hop_seconds)) if frame_hop_seconds else 0

    def __len__(self) -> int:
        return len(self.mixer.clips)

    def set_epoch(self, epoch: int) -> None:
        """Mixtures depend on (seed, epoch, index) only, so a resumed run hears what the original heard."""
        self.epoch.set(epoch)

    def __getitem__(self, index: int) -> dict:
        epoch = self.epoch.get() if self.train else -1  # evaluation mixtures never coincide with a training epoch's
        scape = self.mixer.mix(np.random.default_rng((self.seed, epoch + 1, index)), first=index)
        target = np.zeros(len(self.labels), np.float32)
        item = {"id": f"mix-{epoch + 1}-{index}", "wave": torch.from_numpy(scape.audio), "event_ids": scape.sources}
        if self.scenes is not None:
            item["scene_target"] = torch.zeros(len(self.scene_labels))
            item["scene_target"][self.scene_labels.index(self.scenes[scape.background])] = 1.0
        if self.frame_hop:
            centres = (np.arange(self.n_frames) + 0.5) * self.frame_hop
            frames = np.zeros((self.n_frames, len(self.labels)), np.float32)
            for onset, offset, label in scape.events:
                frames[(centres >= onset) & (centres < offset), self.labels.index(label)] = 1.0
            item["frame_target"] = torch.from_numpy(frames)
            target = frames.max(axis=0)
        else:
            for *_, label in scape.events:
                target[self.labels.index(label)] = 1.0
        return {**item, "target": torch.from_numpy(target)}
