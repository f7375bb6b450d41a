"""earmark.runtime: the torch-free streaming classifier and the `earmark listen` daemon.

Names are imported from their modules on first use, so `earmark listen --help` imports neither ONNX Runtime nor numpy.
"""

from earmark import lazy_namespace

__all__, __getattr__ = lazy_namespace(__name__, {
    "earmark.runtime.model": ["OnnxBackend", "TensorRTBackend", "load_backend", "read_thresholds"],
    "earmark.runtime.postprocess": ["Event", "EventSettings", "EventTracker", "SceneTracker", "top_k"],
    "earmark.runtime.stream": ["Scores", "StreamingClassifier", "WindowResult", "classify_offline", "classify_wave"],
    "earmark.runtime.cli": ["add_event_arguments", "event_settings"],
    "earmark.runtime.daemon": ["Listener"],
    "earmark.runtime.sources": ["FileSource"],
    "earmark.runtime.timeline": ["Timeline", "plot_timeline"],
})
