"""earmark's shared audio core: decoding, FrontendSpec, numpy frontends, labels and manifests (no torch)."""

from earmark.audio.features import compute_features, finish_window, frame_features
from earmark.audio.io import load_audio, resample
from earmark.audio.metadata import METADATA_KEY, ModelMetadata, default_hop_seconds
from earmark.audio.spec import PRESETS, FrontendSpec, get_frontend
from earmark.audio.streaming import FeatureStream
from earmark.audio.events import Event, EventSettings, EventTracker, Scores, decode
from earmark.audio.manifest import Manifest, clip_fold, file_stamps, read_manifest
from earmark.audio.mixing import MixSettings, Soundscape, SoundscapeMixer, background_scenes, active_span, find_backgrounds, split_backgrounds

__all__ = [
    "clip_fold", "active_span", "MixSettings", "Soundscape", "SoundscapeMixer", "find_backgrounds", "split_backgrounds", "background_scenes",
    "Event", "EventSettings", "EventTracker", "Scores", "decode", "Manifest", "read_manifest", "file_stamps",
    "FrontendSpec", "PRESETS", "get_frontend", "ModelMetadata", "METADATA_KEY", "default_hop_seconds",
    "load_audio", "resample", "compute_features", "frame_features", "finish_window", "FeatureStream",
]
