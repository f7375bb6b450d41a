"""Where the runtime frontend's time goes: each step of ``frames_to_log_mel`` for one hop's frames, against the model.

Each round runs the model once, then the frontend's steps in order, as the live stream does: the model has just
evicted the frontend's data and FFT tables from the caches. Medians over the rounds of the calling thread's CPU time
(numpy BLAS and ONNX Runtime pinned to one thread, so they compute on it); frames and buffers as a FeatureStream keeps
them (a float64 signal, one ``features.Scratch``). numpy's float64 rfft alone is timed on the
same windowed frames, and, where scipy is installed (it is not part of the edge install), scipy's float32 rfft of
them as the frontend took it before issue 28, each after its own model run.

    python bench/bench_frontend.py --model M.onnx [--audio FILE] [--rounds 300]
"""

import argparse

import numpy as np
from threadpoolctl import threadpool_limits

from earmark.audio.features import Scratch, compress, frame_view, mel_energies, power_spectrum, taper
from earmark.audio.io import load_audio
from earmark.export.timing import Meter, describe_cpu
from earmark.runtime.model import load_backend


def scipy_rfft():
    """scipy's float32 rfft down the columns of (n_fft, T) frames with one worker (the pre-issue-28 frontend's), or None."""
    try:
        from scipy.fft import rfft
    except ImportError:
        return None
    return lambda windowed: rfft(windowed.T, axis=0, workers=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="an exported .onnx student (its metadata names the frontend)")
    parser.add_argument("--audio", help="a recording to take the frames from (default: white noise)")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    backend = load_backend(args.model, threads=1)
    meta, spec = backend.metadata, backend.metadata.frontend
    hop_frames = max(1, round(meta.hop_seconds / spec.hop_seconds))
    frame_len = spec.n_fft if spec.center else spec.win_length
    need = (hop_frames - 1) * spec.hop_length + frame_len
    signal = (load_audio(args.audio, spec.sample_rate)[:need] if args.audio
              else np.random.default_rng(0).standard_normal(need).astype(np.float32) * 0.1)
    frames = frame_view(signal.astype(np.float64), frame_len, spec.hop_length, hop_frames)  # float64 as in FeatureStream
    features = np.zeros((1, 1, spec.n_mels, meta.input_frames), np.float32)
    scratch = Scratch(spec)  # what a FeatureStream keeps between hops
    steps = {"window": lambda x: taper(spec, x, scratch), "rfft + power": lambda x: power_spectrum(spec, x),
             "mel product": lambda x: mel_energies(spec, x, scratch), "log": lambda x: compress(spec, x)}
    windowed = taper(spec, frames, Scratch(spec)).copy()
    alone = {"of which rfft alone": lambda: np.fft.rfft(windowed, axis=1)}
    scipy = scipy_rfft()
    if scipy is not None:
        windowed32 = windowed.astype(np.float32)
        alone["scipy float32 rfft"] = lambda: scipy(windowed32)
    meters = {name: Meter() for name in [*steps, *alone, "model"]}  # the calling thread's CPU time
    times = {name: [] for name in [*steps, "frontend", *alone, "model"]}

    def timed(name, call, *args):
        before = meters[name].cpu
        out = meters[name](call, *args)
        times[name].append(meters[name].cpu - before)
        return out

    with threadpool_limits(1, user_api="blas"):
        for _ in range(args.rounds):
            timed("model", backend.run, features)
            value = frames
            for name, step in steps.items():
                value = timed(name, step, value)
            times["frontend"].append(sum(times[name][-1] for name in steps))
            for name, call in alone.items():
                backend.run(features)
                timed(name, call)
    ms = {name: 1000 * float(np.median(values)) for name, values in times.items()}
    print(f"{args.model}: frontend {spec.name!r}, {hop_frames} frames per {meta.hop_seconds:g}-s hop, "
          f"{'a recording' if args.audio else 'white noise'}, {args.rounds} rounds, 1 thread (BLAS and ONNX Runtime); {describe_cpu()}")
    print(f"{'step':<22} {'CPU ms/hop':>10} {'x model':>8}")
    for name, value in ms.items():
        print(f"{name:<22} {value:>10.3f} {value / ms['model']:>8.2f}")
    if scipy is not None:
        print(f"numpy float64 rfft / scipy float32 rfft: {ms['of which rfft alone'] / ms['scipy float32 rfft']:.2f}")
    else:
        print("scipy is not installed: no comparison with its rfft")


if __name__ == "__main__":
    main()
