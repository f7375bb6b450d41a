"""Data throughput and teacher-output cache memory, on synthetic audio.

    python bench/bench_data.py [--clips 48] [--cache-clips 100000]

1. Clips per second through the training DataLoader (decode + resample to 32 kHz + random 10-s crop + batch),
   for 10-s 44.1 kHz FLAC clips, from a manifest and from WebDataset shards, with 0, 1 and 2 workers; as ratios
   to the manifest with 0 workers, all in this run, and the CPU time per clip (workers included).
2. Writing a teacher-output cache (527 clip logits per clip, parts of 1000 clips) over many short clips with a
   trivial model, so that the cache machinery, not the model, is measured: peak RSS of the process after 10 %,
   50 % and 100 % of the clips (it must stay flat), the size on disk per clip, and its projection to 1 M clips.
"""

import argparse
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn
from torch.utils.data import DataLoader

from earmark.audio.datasets_torch import collate
from earmark.audio.labels import LabelSet
from earmark.audio.manifest import Clip, Manifest
from earmark.audio.shards import write_shards
from earmark.audio.sources import train_dataset
from earmark.audio.spec import PRESETS
from earmark.engine import ModelOutput
from earmark.teachers.predict import Predictor, predict_to_cache


def _clips(folder: Path, count: int, seconds: float, rate: int, seed: int = 0, suffix: str = "flac") -> Manifest:
    """``count`` noisy tone clips, 4 labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = ["a", "b", "c", "d"]
    t = np.arange(int(seconds * rate)) / rate
    clips = []
    for i in range(count):
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 4000) * t) + 0.05 * rng.standard_normal(t.size)
        path = folder / f"clip{i:05d}.{suffix}"
        sf.write(path, wave.astype(np.float32), rate)
        clips.append(Clip(path.stem, path, (labels[i % 4],), fold=1 + i % 5))
    return Manifest(clips, LabelSet(labels), source=str(folder))


def throughput(root: Path, count: int) -> None:
    manifest = _clips(root / "long", count, 10.0, 44100)
    shards = write_shards(manifest, root / "shards", clips_per_shard=8)
    print(f"\n1. training DataLoader: {count} clips of 10 s, 44.1 kHz FLAC -> 32 kHz, batches of 8 "
          f"(torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"{os.cpu_count()} CPUs)")
    on_disk = sum(Path(s.url).stat().st_size for s in shards.shards) / count
    print(f"  shards: {on_disk / 1e6:.2f} MB per clip on disk (the FLAC bytes as written, plus tar and JSON headers)")
    base = None
    for workers in (0, 1, 2):
        for name, data in (("manifest", manifest), ("shards", shards)):
            dataset = train_dataset(data, 32000, 10.0, batch_size=8, seed=0)  # a fresh dataset: nothing decoded yet
            batch = None if name == "shards" else 8
            loader = DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=None if batch is None else collate)
            start, cpu = time.perf_counter(), _cpu_seconds()
            seen = sum(len(b["id"]) for b in loader)
            rate = seen / (time.perf_counter() - start)
            del loader  # its workers exit, so their CPU time is counted
            per_clip = (_cpu_seconds() - cpu) / seen * 1000
            base = base or rate
            print(f"  {name:<9} workers {workers}: {rate:7.1f} clips/s   x{rate / base:.2f}   {per_clip:6.1f} CPU ms per clip")


class MeanLogits(nn.Module):
    """A trivial 'teacher': 527 logits from the time-averaged features."""

    def __init__(self, n_mels: int, classes: int = 527):
        super().__init__()
        self.head = nn.Linear(n_mels, classes)

    def forward(self, features: torch.Tensor) -> ModelOutput:
        return ModelOutput(clip_logits=self.head(features.mean(dim=(1, 3))))


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (DataLoader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def cache_memory(root: Path, count: int) -> None:
    spec = PRESETS["beats"]  # 16 kHz kaldi fbank: no resampling of the 16 kHz clips
    files = _clips(root / "short", 64, 0.1, spec.sample_rate, suffix="wav")
    labels = LabelSet([f"c{i}" for i in range(527)])
    clips = [Clip(f"id{i:07d}", files.clips[i % 64].path, ("c0",)) for i in range(count)]  # many ids, few files
    manifest = Manifest(clips, labels, source="synthetic")
    out = root / "cache"
    milestones = {int(count * f): None for f in (0.1, 0.5, 1.0)}
    peak, done = [_rss_mb()], threading.Event()

    def watch():  # peak RSS so far, recorded when the finished parts reach each milestone
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            written = len(list(out.glob("part-*.json"))) * 1000 if out.is_dir() else 0
            for m in milestones:
                if milestones[m] is None and written >= m:
                    milestones[m] = peak[0]
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    print(f"\n2. teacher-output cache: {count} WAV clips of 0.1 s, 527 clip logits, parts of 1000 clips, batches of 250")
    start_rss = _rss_mb()
    thread.start()
    start = time.perf_counter()
    torch.manual_seed(0)
    predict_to_cache([Predictor(MeanLogits(spec.n_mels), spec, "bench")], manifest, out, 0.1, batch_size=250, device="cpu")
    elapsed = time.perf_counter() - start
    time.sleep(0.2)
    done.set()
    thread.join()
    print(f"  {count / elapsed:.0f} clips/s; RSS before {start_rss:.0f} MB")
    for m, rss in milestones.items():
        print(f"  peak RSS after {m:>7} clips: {rss if rss is not None else peak[0]:7.0f} MB")
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"  on disk: {size / count:.0f} bytes per clip -> {size / count * 1e6 / 1e9:.2f} GB per 1 M clips "
          f"(frame logits at 250 frames would be {250 * 527 * 2 * 1e6 / 1e9:.0f} GB per 1 M clips, float16)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=48, help="10-s clips for the throughput table")
    parser.add_argument("--cache-clips", type=int, default=100_000, help="short clips for the cache memory run (0: skip it)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-data-"))
    throughput(root, args.clips)
    if args.cache_clips:
        cache_memory(root, args.cache_clips)


if __name__ == "__main__":
    main()
