"""Event-based F1 (as sed_eval's EventBasedMetrics): a hit needs the label, an onset within the collar, and an offset within max(collar, 20% of the event)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventScore:
    """Counts and their F1, precision and recall."""

    hits: int
    references: int
    estimates: int

    @property
    def precision(self) -> float:
        return self.hits / self.estimates if self.estimates else 0.0

    @property
    def recall(self) -> float:
        return self.hits / self.references if self.references else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def event_f1(reference: list[tuple[float, float, str]], estimated: list[tuple[float, float, str]],
             collar: float = 0.2, offsets: bool = True) -> EventScore:
    """Greedy one-to-one matching of (onset, offset, label) events, earliest reference first."""
    used: set[int] = set()
    hits = 0
    for onset, offset, label in sorted(reference):
        offset_collar = max(collar, 0.2 * (offset - onset))
        for j, (e_on, e_off, e_label) in enumerate(estimated):
            if j in used or e_label != label or abs(e_on - onset) > collar:
                continue
            if offsets and abs(e_off - offset) > offset_collar:
                continue
            used.add(j)
            hits += 1
            break
    return EventScore(hits, len(reference), len(estimated))
