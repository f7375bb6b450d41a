"""earmark's shared audio core: decoding, FrontendSpec, numpy frontends, labels and manifests (no torch)."""

from earmark.audio.metadata import METADATA_KEY, ModelMetadata
from earmark.audio.spec import PRESETS, FrontendSpec, get_frontend

__all__ = ["FrontendSpec", "PRESETS", "get_frontend", "ModelMetadata", "METADATA_KEY"]
