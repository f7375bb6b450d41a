"""earmark.runtime: the torch-free streaming classifier and the `earmark listen` daemon."""

from earmark.runtime.model import OnnxBackend, TensorRTBackend, load_backend, read_thresholds
from earmark.runtime.postprocess import Event, EventSettings, EventTracker, SceneTracker, top_k
from earmark.runtime.stream import Scores, StreamingClassifier, WindowResult, classify_offline

__all__ = [
    "StreamingClassifier", "WindowResult", "Scores", "classify_offline", "load_backend", "OnnxBackend", "TensorRTBackend",
    "read_thresholds", "EventTracker", "EventSettings", "SceneTracker", "Event", "top_k",
]
