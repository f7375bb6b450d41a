"""The deployable model's metadata (DESIGN artifact 4), shared by export (writer) and runtime (reader)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from earmark.audio.spec import FrontendSpec

METADATA_KEY = "earmark"
METADATA_VERSION = 2
Task = Literal["clip", "frame"]
Objective = Literal["classify", "detect"]


def default_hop_seconds(window_seconds: float) -> float:
    """The hop `listen` moves a model's window by unless its export says otherwise: half a window (distill tunes the
    event thresholds for it)."""
    return window_seconds / 2


@dataclass(frozen=True)
class ModelMetadata:
    """Everything the runtime needs besides the graph: labels, task, features, timing and thresholds.

    ``input_name`` takes features shaped (batch, 1, n_mels, frames); ``outputs`` maps a role
    (``clip`` for (batch, classes), ``frame`` for (batch, frames_out, classes), ``scene`` for (batch, scenes)) to
    the graph's output name. A ``stateful`` model (a causal student) takes one hop of ``input_frames`` frames plus its
    state tensors ``state_inputs`` (zeros at the start, shapes ``state_shapes``) and returns its scores plus the next
    state ``state_outputs``, in the same order: the runtime feeds each hop the state the previous one returned.
    A model with a ``scene`` output (a second head) names its scenes in ``scene_labels``
    and reports scenes (softmax) beside its events.
    Scores are probabilities: softmax over scenes when ``objective`` is ``classify`` (the runtime reports
    scenes), independent sigmoids when it is ``detect`` (the runtime reports events).
    """

    labels: tuple[str, ...]
    task: Task
    objective: Objective
    frontend: FrontendSpec
    window_seconds: float
    hop_seconds: float
    input_name: str = "features"
    input_frames: int = 0
    outputs: dict[str, str] = field(default_factory=lambda: {"clip": "clip_probs"})
    scene_labels: tuple[str, ...] = ()
    thresholds: dict[str, float] = field(default_factory=dict)
    default_threshold: float = 0.5
    postprocess: dict[str, float] = field(default_factory=dict)  # median, min_duration, max_gap the thresholds were tuned with
    frame_hop_seconds: float = 0.0
    precision: str = "fp32"
    source_checkpoint_sha256: str = ""
    model_name: str = ""
    quantization: dict[str, Any] = field(default_factory=dict)  # INT8: method (qat/ptq), scope, convs left float
    stateful: bool = False
    state_inputs: tuple[str, ...] = ()
    state_outputs: tuple[str, ...] = ()
    state_shapes: tuple[tuple[int, ...], ...] = ()
    adaptation: dict[str, Any] = field(default_factory=dict)  # `earmark adapt`: the base model, examples and site it was adapted with
    format_version: int = METADATA_VERSION

    def threshold(self, label: str) -> float:
        return self.thresholds.get(label, self.default_threshold)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["labels"], data["scene_labels"] = list(self.labels), list(self.scene_labels)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelMetadata":
        """Parse metadata; a missing or foreign field is one clear error naming ``source``."""
        try:
            data: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: its earmark metadata is not valid JSON ({err}); re-export it with `earmark export`.") from None
        version = data.get("format_version")
        if version != METADATA_VERSION:
            raise ValueError(
                f"{source}: earmark metadata format {version!r} is not {METADATA_VERSION}; re-export it with this earmark's `earmark export`."
            )
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing or set(data) - known:
            raise ValueError(f"{source}: earmark metadata lacks {missing} or has unknown {sorted(set(data) - known)}; re-export it with `earmark export`.")
        data["labels"] = tuple(data["labels"])
        data["scene_labels"] = tuple(data.get("scene_labels", ()))
        for name in ("state_inputs", "state_outputs"):
            data[name] = tuple(data.get(name, ()))
        data["state_shapes"] = tuple(tuple(shape) for shape in data.get("state_shapes", ()))
        data["frontend"] = FrontendSpec.from_dict(data["frontend"])
        return cls(**data)
