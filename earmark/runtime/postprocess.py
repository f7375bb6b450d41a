"""From scores to decisions: events (``earmark.audio.events``, shared with threshold tuning) and scene hold."""

from __future__ import annotations

from collections import deque

import numpy as np

from earmark.audio.events import Event, EventSettings, EventTracker, Scores

__all__ = ["Event", "EventSettings", "EventTracker", "Scores", "SceneTracker", "top_k"]


class SceneTracker:
    """Averages scene probabilities over ``smooth`` hops and switches only when a new scene has led for ``hold`` seconds."""

    def __init__(self, labels: tuple[str, ...], smooth: int = 4, hold: float = 2.0):
        self.labels, self.hold = labels, hold
        self._recent: deque[np.ndarray] = deque(maxlen=max(1, smooth))
        self.current: str | None = None
        self._candidate: tuple[str, float] | None = None

    def push(self, probs: np.ndarray, time: float) -> dict | None:
        """Add one window's probabilities; returns a scene record when the scene changes."""
        self._recent.append(probs)
        mean = np.mean(np.stack(self._recent), axis=0)
        best = self.labels[int(mean.argmax())]
        if best == self.current:
            self._candidate = None
            return None
        if self._candidate is None or self._candidate[0] != best:
            self._candidate = (best, time)
        if self.current is None or time - self._candidate[1] >= self.hold:
            self.current, self._candidate = best, None
            return {"type": "scene", "label": best, "score": round(float(mean.max()), 4), "time": round(time, 3)}
        return None


def top_k(labels: tuple[str, ...], probs: np.ndarray, k: int = 3) -> list[dict]:
    """The ``k`` highest-scoring labels: what the model hears right now."""
    order = np.argsort(probs)[::-1][:k]
    return [{"label": labels[i], "score": round(float(probs[i]), 4)} for i in order]
