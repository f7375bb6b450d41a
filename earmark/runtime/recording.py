"""Audio kept for enrolment (`earmark adapt`): the site recorded for a while, and the seconds around each detection
saved as an example in a folder named after its label (move a misnamed one to the right folder, then adapt)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from earmark.runtime.sinks import Delivery


class SiteRecorder:
    """Writes the first ``seconds`` of the stream to ``path``, then calls ``done`` (the daemon stops)."""

    def __init__(self, path: str | os.PathLike, seconds: float, sample_rate: int, done: Callable[[], None]):
        if not seconds > 0:
            raise ValueError(f"--record-background {seconds}: give the seconds to record, e.g. --record-background 120.")
        self.path, self.left, self.done = Path(path), int(seconds * sample_rate), done
        self.file = sf.SoundFile(str(self.path), "w", sample_rate, 1, subtype="PCM_16")

    def tap(self, block: np.ndarray) -> None:
        """Take one block of the stream."""
        if self.left <= 0:
            return
        self.file.write(block[: self.left])
        self.left -= min(self.left, block.size)
        if self.left <= 0:
            self.file.close()
            self.done()

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


class ClipSaver:
    """A sink that saves each event from ``pad`` seconds before its onset to ``pad`` after its offset into DIR/LABEL/,
    once that much has been heard (or at the end of the stream); the stream's last ``keep`` seconds are held in memory."""

    name = "clips"

    def __init__(self, folder: str | os.PathLike, sample_rate: int, pad: float = 1.0, keep: float = 30.0):
        self.folder, self.rate, self.pad = Path(folder), sample_rate, pad
        self.buffer = np.zeros(int(keep * sample_rate), np.float32)
        self.heard = 0  # samples taken so far; the buffer ends at this stream sample
        self.waiting: list[dict] = []  # events whose trailing pad has not been heard yet
        self.delivery = Delivery()

    def tap(self, block: np.ndarray) -> None:
        """Take one block of the stream; save the events whose trailing second it completes."""
        block = block[-self.buffer.size:]
        self.buffer = np.concatenate([self.buffer[block.size:], block])
        self.heard += block.size
        ready = [r for r in self.waiting if (r["offset"] + self.pad) * self.rate <= self.heard]
        self.waiting = [r for r in self.waiting if r not in ready]
        for record in ready:
            self._save(record)

    def emit(self, record: dict) -> None:
        if record.get("type") == "event":
            self.waiting.append(record)

    def _save(self, record: dict) -> None:
        start = max(int((record["onset"] - self.pad) * self.rate), self.heard - self.buffer.size, 0)
        end = min(int((record["offset"] + self.pad) * self.rate), self.heard)
        if end <= start:
            self.delivery.add("dropped")
            return
        label = re.sub(r"[^A-Za-z0-9_-]+", "_", record["label"])
        path = self.folder / label / f"{label}-{record['onset']:010.2f}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), self.buffer[start - self.heard + self.buffer.size:end - self.heard + self.buffer.size], self.rate)
        self.delivery.add("sent")

    def state(self, label: str, on: bool) -> None:
        pass

    def close(self) -> None:
        """The stream ended: save what is waiting with the audio there is."""
        for record in self.waiting:
            self._save(record)
        self.waiting = []
