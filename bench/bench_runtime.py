"""The live runtime on one stream: cost per hop (frontend / model / windowing / post-processing) and real-time factor
with numpy's BLAS at its default thread count and pinned to one thread, then arrival-to-event latency and memory growth.

Uses the demo's INT8 student and soundscapes (run `make demo` first, or pass --model and --soundscapes):

    python bench/bench_runtime.py [--model demo-out/student-int8.onnx] [--minutes 10] [--split-seconds 60]
"""

import argparse
import os
import resource
import time

import numpy as np
import psutil
from threadpoolctl import threadpool_info

from earmark.audio.io import load_audio
from earmark.audio.manifest import read_manifest
from earmark.runtime import EventSettings, EventTracker, StreamingClassifier


class TimedBackend:
    """The classifier's model backend with the CPU time of its calls summed (a measuring wrapper, same outputs)."""

    def __init__(self, backend):
        self.backend, self.metadata, self.cpu = backend, backend.metadata, 0.0

    def run(self, features):
        started = time.process_time()
        out = self.backend.run(features)
        self.cpu += time.process_time() - started
        return out


class TimedFrontend:
    """The classifier's FeatureStream with the CPU time of its pushes summed (what the classifier computes, when it does)."""

    def __init__(self, stream):
        self.stream, self.cpu = stream, 0.0

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def push(self, samples):
        started = time.process_time()
        out = self.stream.push(samples)
        self.cpu += time.process_time() - started
        return out


def cost_per_hop(model: str, audio: np.ndarray, rate: int, block: int, pin_blas: bool) -> dict[str, float]:
    """CPU milliseconds per hop of each stage over ``audio`` pushed in ``block``-sample blocks, and CPU time / audio time.

    Process CPU time, not wall time (it counts BLAS worker threads, and a shared machine's other load does not
    inflate it). The classifier's total is split by timing its model calls (wrapped backend) and its frontend
    pushes (wrapped FeatureStream); the rest is resampling and windowing. Post-processing is the event tracker.
    """
    stream = StreamingClassifier(model, pin_blas=pin_blas)
    stream.backend = TimedBackend(stream.backend)
    stream._stream = TimedFrontend(stream._stream)
    tracker = EventTracker(stream.metadata.labels, EventSettings(stream.metadata.thresholds, offset_lag=stream.plan.offset_lag))
    classify = post = 0.0
    hops = 0
    for start in range(0, audio.size, block):
        started = time.process_time()
        results = stream.push(audio[start:start + block], rate)
        classify += time.process_time() - started
        started = time.process_time()
        for result in results:
            for segment in result.segments:
                tracker.push(segment)
        post += time.process_time() - started
        hops += len(results)
    frontend_s = stream._stream.cpu
    hops = max(hops, 1)
    model_s = stream.backend.cpu
    return {"frontend": 1000 * frontend_s / hops, "model": 1000 * model_s / hops,
            "resample+windowing": 1000 * (classify - frontend_s - model_s) / hops, "post": 1000 * post / hops,
            "rtf": (classify + post) / (audio.size / rate), "hops": hops}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="demo-out/student-int8.onnx")
    parser.add_argument("--soundscapes", default="demo-out/data/soundscapes.tsv")
    parser.add_argument("--minutes", type=float, default=10.0, help="audio fed faster than real time for the memory check")
    parser.add_argument("--split-seconds", type=float, default=60.0, help="audio for the per-hop split (each BLAS setting)")
    args = parser.parse_args()
    stream = StreamingClassifier(args.model)
    rate, block = 16000, 1600
    manifest = read_manifest(args.soundscapes)
    clip = manifest.clips[0]
    wave = load_audio(clip.path, rate)

    # cost per hop, BLAS at its default pool and pinned to one thread (ONNX Runtime: 1 thread in both)
    blas = {lib["internal_api"]: lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
    split_audio = np.tile(wave, int(np.ceil(args.split_seconds * rate / wave.size)))[: int(args.split_seconds * rate)]
    print(f"CPU cost per hop (process time) over {args.split_seconds:g} s of {clip.path.name if hasattr(clip.path, 'name') else clip.path}, "
          f"{block / rate:.2f}-s blocks, {os.cpu_count()} cores, numpy BLAS {blas}:")
    print(f"{'BLAS':<16} {'frontend ms':>11} {'model ms':>9} {'resample+window ms':>18} {'post ms':>8} {'frontend/model':>14} {'CPU/audio':>9}")
    for label, pin in (("default pool", False), ("pinned to 1", True)):
        cost = cost_per_hop(args.model, split_audio, rate, block, pin)
        print(f"{label:<16} {cost['frontend']:>11.3f} {cost['model']:>9.3f} {cost['resample+windowing']:>18.3f} {cost['post']:>8.3f} "
              f"{cost['frontend'] / cost['model']:>14.2f} {cost['rtf']:>9.4f}")

    # arrival-to-event latency: when does the tracker announce (ON) each true event, counted from its onset?
    settings = EventSettings(stream.metadata.thresholds, offset_lag=stream.plan.offset_lag)
    tracker = EventTracker(stream.metadata.labels, settings)
    delays = []
    for start in range(0, wave.size, block):
        arrived = (start + block) / rate
        for result in stream.push(wave[start:start + block], rate):
            for segment in result.segments:
                for label, on in tracker.push(segment)[1]:
                    onsets = [o for o, _, l in clip.events if l == label and o <= arrived]
                    if on and onsets:
                        delays.append(arrived - max(onsets))

    # sustained load: real-time factor, CPU share and resident memory over a long stream
    process = psutil.Process()
    audio = np.tile(wave, int(np.ceil(args.minutes * 60 * rate / wave.size)))[: int(args.minutes * 60 * rate)]
    stream = StreamingClassifier(args.model)
    rss = []
    cpu0, wall0 = process.cpu_times(), time.perf_counter()
    for i, start in enumerate(range(0, audio.size, block)):
        stream.push(audio[start:start + block], rate)
        if i % (600 * rate // block // 10) == 0:
            rss.append(process.memory_info().rss / 2**20)
    wall = time.perf_counter() - wall0
    cpu = sum(process.cpu_times()[:2]) - sum(cpu0[:2])
    seconds = audio.size / rate
    print(f"model {args.model}: window {stream.metadata.window_seconds} s, hop {stream.plan.hop_seconds:.3f} s, 1 thread")
    print(f"real-time factor (wall / audio)      {wall / seconds:.4f}")
    print(f"CPU share of one core per stream     {cpu / seconds:.2%}")
    if delays:
        print(f"arrival-to-event latency (ON)        median {np.median(delays):.2f} s over {len(delays)} events")
    print(f"resident memory over {args.minutes:g} min of audio: start {rss[0]:.1f} MB, end {rss[-1]:.1f} MB, "
          f"growth {rss[-1] - rss[1 if len(rss) > 1 else 0]:+.1f} MB after warm-up (peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB)")


if __name__ == "__main__":
    main()
