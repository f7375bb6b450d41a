"""The objective, the loss on labels and the one evaluation loop that fine-tuning and distillation share.

``objective`` is the one multi-label decision: ``detect`` trains independent sigmoid detectors with per-class BCE
(sound events), ``classify`` a softmax over classes (scenes). ``collect_outputs`` runs a model over batches;
``metrics`` scores what it collected; ``best_metric`` names the one that picks a run's best checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from earmark.audio.features_torch import Frontend
from earmark.audio.sources import DataSource
from earmark.engine.metrics import accuracies, average_precision, frame_f1
from earmark.engine.outputs import OBJECTIVES, probabilities
from earmark.nn import match_time


def resolve_objective(objective: str | None, manifest: DataSource, task: str = "clip") -> str:
    """``detect`` or ``classify``: as asked, else as the manifest is labelled (frame tasks always detect)."""
    if objective not in (None, "", *OBJECTIVES):
        raise ValueError(f"objective {objective!r} is not 'detect' (sigmoid, events) or 'classify' (softmax, scenes).")
    if task == "frame":
        if objective == "classify":
            raise ValueError("a frame-level (--task frame) model detects events per frame; use --objective detect or --task clip.")
        return "detect"
    return objective or ("detect" if manifest.multi_label else "classify")


def label_loss(logits: torch.Tensor, target: torch.Tensor, objective: str) -> torch.Tensor:
    """Loss on (possibly mixed) label targets: per-class BCE to detect, cross-entropy with soft targets to classify."""
    if objective == "detect":
        return F.binary_cross_entropy_with_logits(logits, target)
    return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()


def frame_loss(frame_logits: torch.Tensor, frame_target: torch.Tensor, balanced: bool = False) -> torch.Tensor:
    """Frame-wise BCE against targets on any frame grid (resampled to the logits'); ``balanced`` weighs each class's
    positive frames in the batch by its negatives over its positives (clamped to 1-100): a short sound covers few
    frames, and unweighted BCE teaches every class to stay low."""
    target = match_time(frame_target, frame_logits.shape[1])
    if not balanced:
        return F.binary_cross_entropy_with_logits(frame_logits, target)
    positives = target.sum(dim=(0, 1))
    weight = ((target.numel() / target.shape[-1] - positives) / positives.clamp(min=1)).clamp(1, 100)
    return F.binary_cross_entropy_with_logits(frame_logits, target, pos_weight=weight)


@dataclass
class Outputs:
    """A model's logits over a dataset, beside the targets; frame arrays on the targets' frame grid (frame datasets)."""

    ids: list[str]
    clip_logits: np.ndarray
    targets: np.ndarray
    frame_logits: np.ndarray | None = None
    frame_targets: np.ndarray | None = None
    scene_logits: np.ndarray | None = None  # a scene head's, on data that carries scene targets (mixtures over scenes)
    scene_targets: np.ndarray | None = None


@torch.no_grad()
def collect_outputs(model: nn.Module, frontend: Frontend, batches: Iterable[dict]) -> Outputs:
    """Run ``model`` (eval mode) over ``batches`` in order; the one evaluation loop of fine-tuning and distillation."""
    model.eval()
    device = next(model.parameters()).device
    ids, clips, targets, frames, frame_targets, scenes, scene_targets = [], [], [], [], [], [], []
    for batch in batches:
        out = model(frontend(batch["wave"].to(device)).unsqueeze(1))
        ids += batch["id"]
        clips.append(out.clip_logits.float().cpu().numpy())
        targets.append(batch["target"].numpy())
        if "frame_target" in batch and out.frame_logits is not None:
            frame_targets.append(batch["frame_target"].numpy())
            frames.append(match_time(out.frame_logits.float().cpu(), batch["frame_target"].shape[1]).numpy())
        if "scene_target" in batch and out.scene_logits is not None:
            scene_targets.append(batch["scene_target"].numpy())
            scenes.append(out.scene_logits.float().cpu().numpy())
    joined = lambda parts: np.concatenate(parts) if parts else None
    return Outputs(ids, np.concatenate(clips), np.concatenate(targets), joined(frames), joined(frame_targets), joined(scenes),
                   joined(scene_targets))


def metrics(outputs: Outputs, objective: str) -> dict[str, float]:
    """Frame F1, frame mAP and clip mAP for frame outputs; mAP (and accuracy on single-label data) to detect; accuracies to
    classify; and a scene head's accuracies (``scene_accuracy``, ``scene_macro_accuracy``) where there are scene targets."""
    result = _head_metrics(outputs, objective)
    if outputs.scene_logits is not None:
        scenes, truth = outputs.scene_logits, outputs.scene_targets
        result.update({f"scene_{k}": v for k, v in accuracies(scenes.argmax(1), truth.argmax(1), truth.shape[1]).items()})
    return result


def _head_metrics(outputs: Outputs, objective: str) -> dict[str, float]:
    s, t = outputs.clip_logits, outputs.targets
    if outputs.frame_logits is not None:
        frames, frame_targets = outputs.frame_logits, outputs.frame_targets
        return {"frame_f1": frame_f1(probabilities(torch.from_numpy(frames), "detect").numpy(), frame_targets),
                "frame_mAP": average_precision(frames.reshape(-1, frames.shape[-1]), frame_targets.reshape(-1, frames.shape[-1])),
                "mAP": average_precision(s, t)}
    if objective == "detect":
        result = {"mAP": average_precision(s, t)}
        if t.sum(1).max() > 1 or t.sum(1).min() < 1:  # several or no labels per clip: top-1 accuracy means nothing
            return result
        return {**result, **accuracies(s.argmax(1), t.argmax(1), t.shape[1])}
    return accuracies(s.argmax(1), t.argmax(1), t.shape[1])


def best_metric(objective: str, task: str) -> str:
    """The validation metric that picks the best checkpoint: threshold-free for detectors (F1 at 0.5 stays 0 while a rare event's scores rise)."""
    return "frame_mAP" if task == "frame" else "mAP" if objective == "detect" else "accuracy"
