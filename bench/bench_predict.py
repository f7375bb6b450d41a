"""Teacher-output throughput (clips per second, batched frontend included) for tiny, small and base teachers.

    python bench/bench_predict.py [--clips 64] [--seconds 10] [--base]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from earmark.audio.manifest import read_manifest
from earmark.audio.synth import synthesize
from earmark.teachers import create_teacher
from earmark.teachers.predict import Predictor, predict_to_cache


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--base", action="store_true", help="also the base (paper-size) teachers (slow on a CPU)")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    data = synthesize(out / "data", clips_per_class=max(1, args.clips // 8), soundscapes=1)
    manifest = read_manifest(data.clips_csv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    names = ["beats_tiny", "atst_frame_tiny", "asit_tiny", "asit_small", "atst_frame_small"] + (["beats_base", "asit_base"] if args.base else [])
    print(f"{len(manifest)} clips of {args.seconds:g} s on {device} ({torch.get_num_threads()} threads)")
    for name in names:
        model = create_teacher(name)
        start = time.perf_counter()
        predict_to_cache([Predictor(model, model.frontend, name)], manifest, out / name, args.seconds, batch_size=16, device=device, embeddings=True)
        print(f"  {name:<18} {len(manifest) / (time.perf_counter() - start):8.1f} clips/s")


if __name__ == "__main__":
    main()
