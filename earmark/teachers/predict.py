"""Teacher outputs over a manifest, batched (autocast on GPU), into the teacher-output cache; ensembles average logits."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from earmark.audio.datasets_torch import ClipDataset, collate
from earmark.audio.features_torch import Frontend
from earmark.audio.manifest import Manifest
from earmark.audio.spec import FrontendSpec
from earmark.engine.trainer import progress_interval
from earmark.teachers.cache import cache_key, write_cache


@dataclass
class Predictor:
    """A model that scores features of its own frontend; ``sha256`` identifies its checkpoint."""

    model: nn.Module
    frontend: FrontendSpec
    sha256: str


def outputs(model: nn.Module, features: torch.Tensor, embeddings: bool = False) -> dict[str, torch.Tensor]:
    """Clip logits (and frame logits / embeddings when the model gives them) of a teacher or student."""
    out = model(features)
    result: dict[str, torch.Tensor] = {}
    if hasattr(out, "clip_logits"):
        if out.clip_logits is None and not embeddings:
            raise ValueError("this teacher has no classification head: fine-tune it first (`earmark finetune`), "
                             "or ask for embeddings only (--embeddings).")
        if out.clip_logits is not None:
            result["clip_logits"] = out.clip_logits
        if out.frame_logits is not None:
            result["frame_logits"] = out.frame_logits
        if embeddings:
            result["embeddings"] = out.clip_embedding
        return result
    if isinstance(out, tuple):
        result["frame_logits"], result["clip_logits"] = out
    else:
        result["clip_logits"] = out
    if embeddings and hasattr(model, "embed"):
        result["embeddings"] = model.embed(features)
    return result


def ensemble_key(predictors: list[Predictor], manifest: Manifest, clip_seconds: float, embeddings: bool = False) -> str:
    """The cache key of these teachers on this manifest (frontends of every member, and whether embeddings are kept)."""
    frontends = "|".join(sorted(p.frontend.to_json() for p in predictors)) + ("|embeddings" if embeddings else "")
    return cache_key([p.sha256 for p in predictors], frontends, manifest.fingerprint(), clip_seconds)


@torch.no_grad()
def predict_to_cache(predictors: list[Predictor], manifest: Manifest, out: str | os.PathLike, clip_seconds: float,
                     batch_size: int = 32, device: str | None = None, embeddings: bool = False) -> Path:
    """Score every clip (deterministic centre crops) with each predictor, average the logits, write the cache."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    totals: dict[str, np.ndarray] = {}
    ids: list[str] = []
    for member, predictor in enumerate(predictors):
        model = predictor.model.to(dev).eval()
        frontend = Frontend(predictor.frontend).to(dev)
        loader = DataLoader(ClipDataset(manifest, predictor.frontend.sample_rate, clip_seconds), batch_size=batch_size, collate_fn=collate)
        chunks: dict[str, list[np.ndarray]] = {}
        member_ids: list[str] = []
        for batch in tqdm(loader, desc=f"teacher {member + 1}/{len(predictors)}", leave=False, mininterval=progress_interval()):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                result = outputs(model, frontend(batch["wave"].to(dev)).unsqueeze(1), embeddings)
            for name, value in result.items():
                chunks.setdefault(name, []).append(value.float().cpu().numpy())
            member_ids += batch["id"]
        stacked = {name: np.concatenate(parts) for name, parts in chunks.items()}
        if member == 0:
            totals, ids = stacked, member_ids
        else:
            if set(stacked) != set(totals) or any(stacked[k].shape != totals[k].shape for k in totals):
                raise ValueError("ensemble members give outputs of different shapes; ensemble teachers of the same task and label set.")
            totals = {k: totals[k] + stacked[k] for k in totals}
    averaged = {k: v / len(predictors) for k, v in totals.items()}
    key = ensemble_key(predictors, manifest, clip_seconds, embeddings)
    provenance = {"teachers": [p.sha256 for p in predictors], "manifest": manifest.source, "clip_seconds": clip_seconds}
    return write_cache(out, key, ids, manifest.labels.to_list(), averaged, provenance)
