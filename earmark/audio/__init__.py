"""earmark's shared audio core: decoding, FrontendSpec, numpy frontends, labels and manifests (no torch).

Names are imported from their modules on first use, so a module such as earmark.audio.options
comes without numpy, scipy and soundfile.
"""

from earmark import lazy_namespace

__all__, __getattr__ = lazy_namespace(__name__, {
    "earmark.audio.features": ["compute_features", "finish_window", "frame_features"],
    "earmark.audio.io": ["load_audio", "resample"],
    "earmark.audio.melbanks": ["mel_banks"],
    "earmark.audio.metadata": ["METADATA_KEY", "ModelMetadata", "default_hop_seconds"],
    "earmark.audio.spec": ["PRESETS", "FrontendSpec", "get_frontend"],
    "earmark.audio.streaming": ["FeatureStream"],
    "earmark.audio.events": ["Event", "EventSettings", "EventTracker", "Scores", "decode"],
    "earmark.audio.manifest": ["Manifest", "clip_fold", "file_stamps", "merge_overlaps", "read_manifest"],
    "earmark.audio.mixing": ["MixSettings", "Soundscape", "SoundscapeMixer", "active_span", "background_scenes", "find_backgrounds",
                             "split_backgrounds"],
})
