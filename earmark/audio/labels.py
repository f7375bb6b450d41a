"""Ordered label sets: index lookup, JSON round trip, one clear error for an unknown label."""

from __future__ import annotations

from typing import Iterable, Iterator


class LabelSet:
    """An ordered, duplicate-free list of class names."""

    def __init__(self, labels: Iterable[str]):
        self.labels: tuple[str, ...] = tuple(labels)
        self._index = {label: i for i, label in enumerate(self.labels)}
        if len(self._index) != len(self.labels):
            duplicates = sorted({l for l in self.labels if self.labels.count(l) > 1})
            raise ValueError(f"label set repeats {duplicates}; each class name must appear once.")

    def index(self, label: str) -> int:
        """The class index of ``label``."""
        try:
            return self._index[label]
        except KeyError:
            raise ValueError(f"label {label!r} is not in the label set {list(self.labels)}; fix the row or extend the label set.") from None

    def __contains__(self, label: object) -> bool:
        return label in self._index

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[str]:
        return iter(self.labels)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSet) and self.labels == other.labels

    def __repr__(self) -> str:
        return f"LabelSet({list(self.labels)})"

    def to_list(self) -> list[str]:
        return list(self.labels)
