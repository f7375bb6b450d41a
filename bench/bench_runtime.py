"""The live runtime on one stream: cost per hop (frontend / model / windowing / post-processing) and real-time factor
with numpy's BLAS at its default thread count and pinned to one thread, then arrival-to-event latency and memory growth.

Uses the demo's INT8 student and soundscapes (run `make demo` first, or pass --model and --soundscapes):

    python bench/bench_runtime.py [--model demo-out/student-int8.onnx] [--minutes 10] [--split-seconds 60] [--rate 16000]
"""

import argparse
import resource
import time

import numpy as np
import psutil
from threadpoolctl import threadpool_info

from earmark.audio.io import load_audio
from earmark.audio.manifest import read_manifest
from earmark.export.timing import Meter, describe_cpu, repeated
from earmark.runtime import EventSettings, EventTracker, StreamingClassifier


class TimedBackend:
    """The classifier's model backend, its calls timed by ``meter`` (a measuring wrapper, same outputs)."""

    def __init__(self, backend, meter: Meter):
        self.backend, self.metadata, self.meter = backend, backend.metadata, meter

    def run(self, features):
        return self.meter(self.backend.run, features)


class TimedFrontend:
    """The classifier's FeatureStream, its pushes timed by ``meter`` (what the classifier computes, when it does)."""

    def __init__(self, stream, meter: Meter):
        self.stream, self.meter = stream, meter

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def push(self, samples):
        return self.meter(self.stream.push, samples)


def cost_per_hop(model: str, audio: np.ndarray, rate: int, block: int, pin_blas: bool) -> dict[str, float]:
    """CPU milliseconds per hop of each stage over ``audio`` pushed in ``block``-sample blocks, a bare ``session.run`` on
    one window for comparison, and CPU time / audio time.

    CPU time, not wall time (a shared machine's other load does not inflate it): the calling thread's with BLAS pinned to
    one thread, the process's with BLAS's default pool (its worker threads count). The classifier's total is split by
    timing its model calls (wrapped backend) and its frontend pushes (wrapped FeatureStream); the rest is resampling
    and windowing. Post-processing is the event tracker, run over the scores afterwards. All pushes are timed as one
    call and the tracker's pushes as another: timing each 0.1-s push read the clocks five times a hop (~4 µs a read).
    """
    clock = time.thread_time if pin_blas else time.process_time
    stream = StreamingClassifier(model, pin_blas=pin_blas)
    model_meter, frontend_meter, classify, post = Meter(clock), Meter(clock), Meter(clock), Meter(clock)
    stream.backend = TimedBackend(stream.backend, model_meter)
    stream._stream = TimedFrontend(stream._stream, frontend_meter)
    tracker = EventTracker(stream.metadata.labels, EventSettings(stream.metadata.thresholds, offset_lag=stream.plan.offset_lag))
    results = classify(lambda: [r for start in range(0, audio.size, block) for r in stream.push(audio[start:start + block], rate)])
    post(lambda: [tracker.push(segment) for result in results for segment in result.segments])
    hops = max(len(results), 1)
    meta = stream.metadata
    window = np.zeros((1, 1, meta.frontend.n_mels, meta.input_frames), np.float32)
    bare = repeated(lambda: stream.backend.backend.run(window), 200, clock=clock).cpu_p50
    per_hop = lambda meter: 1000 * meter.cpu / hops
    return {"frontend": per_hop(frontend_meter), "model": per_hop(model_meter),
            "resample+windowing": per_hop(classify) - per_hop(frontend_meter) - per_hop(model_meter), "post": per_hop(post),
            "bare run": bare, "stream/bare": (per_hop(classify) + per_hop(post)) / bare,
            "rtf": (classify.cpu + post.cpu) / (audio.size / rate), "wall rtf": (classify.wall + post.wall) / (audio.size / rate)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="demo-out/student-int8.onnx")
    parser.add_argument("--soundscapes", default="demo-out/data/soundscapes.tsv")
    parser.add_argument("--minutes", type=float, default=10.0, help="audio fed faster than real time for the memory check")
    parser.add_argument("--split-seconds", type=float, default=60.0, help="audio for the per-hop split (each BLAS setting)")
    parser.add_argument("--rate", type=int, default=16000, help="the rate the soundscape is decoded at and pushed in (the "
                        "classifier resamples any other than the model's)")
    args = parser.parse_args()
    stream = StreamingClassifier(args.model)
    rate, block = args.rate, args.rate // 10
    manifest = read_manifest(args.soundscapes)
    clip = manifest.clips[0]
    wave = load_audio(clip.path, rate)

    # cost per hop, BLAS at its default pool and pinned to one thread (ONNX Runtime: 1 thread in both)
    blas = {lib["internal_api"]: lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
    split_audio = np.tile(wave, int(np.ceil(args.split_seconds * rate / wave.size)))[: int(args.split_seconds * rate)]
    print(describe_cpu())
    print(f"CPU cost per hop (thread CPU time with BLAS pinned, process CPU time with its pool) over {args.split_seconds:g} s of "
          f"{clip.path.name if hasattr(clip.path, 'name') else clip.path} at {rate} Hz (model {stream.spec.sample_rate} Hz), "
          f"{block / rate:.2f}-s blocks, numpy BLAS {blas}:")
    print(f"{'BLAS':<16} {'frontend ms':>11} {'model ms':>9} {'resample+window ms':>18} {'post ms':>8} {'frontend/model':>14} "
          f"{'bare run ms':>11} {'stream/bare':>11} {'CPU/audio':>9} {'wall/audio':>10}")
    for label, pin in (("default pool", False), ("pinned to 1", True)):
        cost = cost_per_hop(args.model, split_audio, rate, block, pin)
        print(f"{label:<16} {cost['frontend']:>11.3f} {cost['model']:>9.3f} {cost['resample+windowing']:>18.3f} {cost['post']:>8.3f} "
              f"{cost['frontend'] / cost['model']:>14.2f} {cost['bare run']:>11.3f} {cost['stream/bare']:>11.2f} {cost['rtf']:>9.4f} "
              f"{cost['wall rtf']:>10.4f}")

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
