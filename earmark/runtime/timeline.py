"""What the runtime heard over one file: segment scores and events, as a selection table and a timeline PNG.

``listen FILE --timeline/--selections`` and ``earmark eval`` write the same files. matplotlib is imported only
when a picture is drawn.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from earmark.runtime.postprocess import Event, Scores
from earmark.runtime.sinks import Delivery
from earmark.runtime.stream import WindowResult

RAVEN_COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
                 "Annotation", "Score"]


@dataclass
class Timeline:
    """Segment scores and events of one stream, with the on threshold of each label.

    A sink of the listener (``listener.attach(timeline, timeline.add)``): ``add`` watches every model window,
    ``emit`` keeps the event records.
    """

    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    segments: list[Scores] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    name: str = "timeline"
    delivery: Delivery = field(default_factory=Delivery)

    def add(self, result: WindowResult) -> None:
        self.segments.extend(result.segments)

    def emit(self, record: dict) -> None:
        if record["type"] == "event":
            self.events.append(Event(record["label"], record["onset"], record["offset"], record["score"], record.get("detected")))
            self.delivery.add("sent")

    def state(self, label: str, on: bool) -> None:
        pass

    def close(self) -> None:
        pass

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(timestamps (N + 1,), probs (N, C)): segment i spans [timestamps[i], timestamps[i + 1])."""
        if not self.segments:
            raise ValueError("the stream produced no scores: the audio is shorter than one model window.")
        starts = [s.start for s in self.segments]
        return np.array([*starts, self.segments[-1].end]), np.stack([s.probs for s in self.segments])

    def triples(self) -> list[tuple[float, float, str]]:
        """The events as (onset, offset, label), in time order."""
        return sorted((e.onset, e.offset, e.label) for e in self.events)


def write_selections(events: list[Event], path: str | os.PathLike, max_frequency: float) -> Path:
    """A Raven selection table (tab-separated, any suffix) or, for ``.csv``, onset,offset,label,score rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(events, key=lambda e: (e.onset, e.label))
    with open(path, "w", newline="") as f:
        if path.suffix.lower() == ".csv":
            writer = csv.writer(f)
            writer.writerow(["onset", "offset", "label", "score"])
            writer.writerows([round(e.onset, 3), round(e.offset, 3), e.label, round(e.score, 4)] for e in ordered)
        else:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(RAVEN_COLUMNS)
            writer.writerows([i, "Spectrogram 1", 1, round(e.onset, 3), round(e.offset, 3), 0, round(max_frequency), e.label,
                              round(e.score, 4)] for i, e in enumerate(ordered, start=1))
    return path


def plot_timeline(audio_path: str | os.PathLike, timeline: Timeline, spec, path: str | os.PathLike,
                  reference: list[tuple[float, float, str]] | None = None, title: str = "") -> Path:
    """Spectrogram; detections (and the ground truth, where there is a ``reference``) per label; scores with each label's
    threshold (dashed). The picture's format follows the file name (.png, .svg, .pdf)."""
    import matplotlib  # missing: the CLI names the extra that installs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from earmark.audio.features import compute_features
    from earmark.audio.io import load_audio

    features = compute_features(spec, load_audio(audio_path, spec.sample_rate))
    seconds = features.shape[1] * spec.hop_seconds
    reference = reference or []
    timestamps, probs = timeline.grid()
    involved = {label for *_, label in reference} | {e.label for e in timeline.events}
    shown = [i for i, label in enumerate(timeline.labels)
             if label in involved or probs[:, i].max() >= 0.5 * timeline.thresholds[i]]
    colours = {timeline.labels[i]: plt.cm.tab10(k % 10) for k, i in enumerate(shown)}
    rows = [timeline.labels[i] for i in shown]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(12, 7 + 0.2 * len(rows)), sharex=True,
                                              gridspec_kw={"height_ratios": [2, 0.3 + 0.25 * max(len(rows), 1), 1.6]})
    top.imshow(features, origin="lower", aspect="auto", extent=(0, seconds, 0, spec.n_mels), cmap="magma")
    top.set_ylabel("mel bin")
    top.set_title(title or f"{Path(audio_path).name}: log-mel spectrogram")
    for onset, offset, label in reference:  # ground truth: upper half of the label's row
        if label in rows:
            middle.broken_barh([(onset, offset - onset)], (rows.index(label) + 0.05, 0.4), color=colours[label], alpha=0.45)
    for event in timeline.events:  # detections: lower half, labelled with their score
        row = rows.index(event.label)
        middle.broken_barh([(event.onset, event.offset - event.onset)], (row - 0.45, 0.4), color=colours[event.label])
        middle.text(event.onset, row - 0.3, f"{event.label} {event.score:.2f}", fontsize=7, va="center", clip_on=True)
    middle.set_yticks(range(len(rows)), rows, fontsize=7)
    middle.set_ylim(-0.5, max(len(rows), 1) - 0.5)
    middle.set_title("ground truth (pale, above) and detections (solid, below)" if reference else "detections", fontsize=9)
    centres = (timestamps[:-1] + timestamps[1:]) / 2
    for i in shown:
        label = timeline.labels[i]
        bottom.plot(centres, probs[:, i], color=colours[label], lw=1, label=label)
        bottom.axhline(timeline.thresholds[i], color=colours[label], lw=0.8, ls="--")
    bottom.set_ylim(0, 1.05)
    bottom.set_xlim(0, seconds)
    bottom.set_xlabel("seconds")
    bottom.set_ylabel("score")
    bottom.set_title("scores per segment; dashed: on threshold", fontsize=9)
    if shown:
        bottom.legend(ncol=4, fontsize=7, loc="upper right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
