"""The live runtime on one stream: real-time factor, CPU share of one core, arrival-to-event latency, memory growth.

Uses the demo's INT8 student and soundscapes (run `make demo` first, or pass --model and --soundscapes):

    python bench/bench_runtime.py [--model demo-out/student-int8.onnx] [--minutes 10]
"""

import argparse
import resource
import time

import numpy as np
import psutil

from earmark.audio.io import load_audio
from earmark.audio.manifest import read_manifest
from earmark.runtime import EventSettings, EventTracker, StreamingClassifier


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="demo-out/student-int8.onnx")
    parser.add_argument("--soundscapes", default="demo-out/data/soundscapes.tsv")
    parser.add_argument("--minutes", type=float, default=10.0, help="audio fed faster than real time for the memory check")
    args = parser.parse_args()
    stream = StreamingClassifier(args.model)
    rate, block = 16000, 1600
    manifest = read_manifest(args.soundscapes)
    clip = manifest.clips[0]
    wave = load_audio(clip.path, rate)

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
