"""earmark.evaluation: a checkpoint or .onnx on clip manifests (accuracy, mAP) or strong-label soundscapes (event F1, PSDS).

Soundscapes go through `listen`'s own streaming pipeline; the metrics come from sed_eval and sed_scores_eval
(the ``eval`` extra).
"""

from earmark.evaluation.clips import clip_metrics, clip_scores
from earmark.evaluation.events import PSDS1, PSDS2, ScoreTrack, detection_latency, event_metrics, false_alarms, psds, segment_map
from earmark.evaluation.models import deployable
from earmark.evaluation.soundscapes import Heard, evaluate_soundscapes, listen_to_file

__all__ = [
    "event_metrics", "psds", "segment_map", "false_alarms", "ScoreTrack", "PSDS1", "PSDS2", "clip_metrics", "clip_scores", "deployable",
    "evaluate_soundscapes", "listen_to_file", "Heard",
]
