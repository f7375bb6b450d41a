"""Teacher outputs over a manifest or shards, batched (bf16 autocast on GPU), across torchrun ranks, into the teacher-output cache."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from earmark.audio import file_stamps
from earmark.audio.features_torch import Frontend
from earmark.audio.sources import DataSource, PlannedBatches
from earmark.audio.spec import FrontendSpec
from earmark.engine import barrier, setup_distributed
from earmark.engine.trainer import progress_interval
from earmark.teachers.cache import CacheWriter, cache_key, cache_lock


@dataclass
class Predictor:
    """A model that scores features of its own frontend; ``sha256`` identifies its checkpoint."""

    model: nn.Module
    frontend: FrontendSpec
    sha256: str


def outputs(model: nn.Module, features: torch.Tensor, embeddings: bool = False) -> dict[str, torch.Tensor]:
    """Clip logits (and frame logits / embeddings when asked and given) of a teacher or student, for the cache."""
    out = model(features)
    if out.clip_logits is None and not embeddings:
        raise ValueError("this teacher has no classification head: fine-tune it first (`earmark finetune`), "
                         "or ask for embeddings only (--embeddings).")
    fields = {"clip_logits": out.clip_logits, "frame_logits": out.frame_logits, "embeddings": out.embedding if embeddings else None}
    return {name: value for name, value in fields.items() if value is not None}


def ensemble_key(predictors: list[Predictor], data: DataSource, clip_seconds: float) -> str:
    """The cache key of these teachers on this data (frontends of every member, its files' sizes and times); whether the
    cache also holds embeddings is in its index, not its key: a cache with them serves a run that does not need them."""
    frontends = "|".join(sorted(p.frontend.to_json() for p in predictors))
    return cache_key([p.sha256 for p in predictors], frontends, data.fingerprint(), clip_seconds, file_stamps(data.files()))


@torch.no_grad()
def predict_to_cache(predictors: list[Predictor], data: DataSource, out: str | os.PathLike, clip_seconds: float,
                     batch_size: int = 32, device: str | None = None, embeddings: bool = False, workers: int = 0,
                     part_clips: int = 1000) -> Path:
    """Score every clip (deterministic centre crops) with each predictor, average the outputs, write the cache part by part.

    Under torchrun, rank r scores parts r, r + W, r + 2W...: a part's clips, batches and rows are the same for any
    number of ranks, so the cache is too. Parts already written under the same key (a killed run) are skipped.
    """
    info = setup_distributed(device)
    writer = CacheWriter(out, ensemble_key(predictors, data, clip_seconds), part_clips, embeddings)
    with cache_lock(out, exclusive=True) if info.is_main else contextlib.nullcontext():
        if info.is_main:
            writer.start()
        barrier()
        parts = -(-len(data) // part_clips)
        if not writer.complete():
            _score_parts(predictors, data, writer, [j for j in range(info.rank, parts, info.world_size) if not writer.done(j)],
                         clip_seconds, batch_size, info, embeddings, workers)
        barrier()
        if info.is_main and not writer.complete():
            provenance = {"teachers": [p.sha256 for p in predictors], "data": data.source, "clip_seconds": clip_seconds}
            writer.finish(parts, data.labels.to_list(), provenance)
    barrier()  # every rank reads the cache once rank 0 has let go of the lock
    return Path(out)


def _score_parts(predictors: list[Predictor], data: DataSource, writer: CacheWriter, parts: list[int], clip_seconds: float,
                 batch_size: int, info, embeddings: bool, workers: int) -> None:
    """Score and write ``parts`` of the data, holding one part's outputs in memory at a time."""
    size, total = writer.part_clips, len(data)
    ranges = [(j * size, min((j + 1) * size, total)) for j in parts]
    plans = [[(s, min(s + batch_size, end)) for s in range(start, end, batch_size)] for start, end in ranges]
    members = [(p.model.to(info.device).eval(), Frontend(p.frontend).to(info.device)) for p in predictors]
    rates = sorted({p.frontend.sample_rate for p in predictors})
    loaders = {rate: PlannedBatches(data, rate, clip_seconds, plans, workers, info.device.type == "cuda") for rate in rates}
    all_ids = data.ids
    bar = tqdm(total=sum(end - start for start, end in ranges), desc="teacher outputs", mininterval=progress_interval(),
               disable=not info.is_main, unit="clip")
    for number, (part, (start, end)) in enumerate(zip(parts, ranges)):
        row = {clip_id: i for i, clip_id in enumerate(all_ids[start:end])}  # rows in data order, however workers interleave
        per_member: list[dict[str, np.ndarray]] = [{} for _ in members]
        for rate, loader in loaders.items():
            for batch in loader.batches(number):
                rows = [row[i] for i in batch["id"]]
                waves = batch["wave"].to(info.device, non_blocking=True)
                for m, (model, frontend) in enumerate(members):
                    if frontend.spec.sample_rate != rate:
                        continue
                    with torch.autocast(info.device.type, dtype=torch.bfloat16, enabled=info.device.type == "cuda"):
                        result = outputs(model, frontend(waves).unsqueeze(1), embeddings)
                    for name, value in result.items():
                        array = per_member[m].setdefault(name, np.zeros((end - start, *value.shape[1:]), np.float32))
                        array[rows] = value.float().cpu().numpy()
                if rate == rates[0]:
                    bar.update(len(rows))
        first = per_member[0]
        if any(set(o) != set(first) or any(o[k].shape != first[k].shape for k in first) for o in per_member):
            raise ValueError("ensemble members give outputs of different shapes; ensemble teachers of the same task and label set.")
        averaged = {k: sum(o[k] for o in per_member) / len(per_member) for k in first}
        writer.write_part(part, all_ids[start:end], averaged)
    bar.close()
