"""earmark.runtime: the torch-free streaming classifier and the `earmark listen` daemon."""

from earmark.runtime.model import OnnxBackend, TensorRTBackend, load_backend, read_thresholds
from earmark.runtime.postprocess import Event, EventSettings, EventTracker, SceneTracker, top_k
from earmark.runtime.stream import Scores, StreamingClassifier, WindowResult, classify_offline, classify_wave
from earmark.runtime.cli import add_event_arguments, event_settings
from earmark.runtime.daemon import Listener
from earmark.runtime.sources import FileSource
from earmark.runtime.timeline import Timeline, plot_timeline

__all__ = [
    "add_event_arguments", "event_settings", "Listener", "FileSource", "classify_wave", "Timeline", "plot_timeline",
    "StreamingClassifier", "WindowResult", "Scores", "classify_offline", "load_backend", "OnnxBackend", "TensorRTBackend",
    "read_thresholds", "EventTracker", "EventSettings", "SceneTracker", "Event", "top_k",
]
