"""Each recipe on the demo data: training throughput (samples/s), and a tiny teacher pretrained then fine-tuned
against the same teacher fine-tuned from scratch (test accuracy; same seed and fine-tuning budget).

    python bench/bench_pretrain.py [--steps 100] [--epochs 20] [--recipes acmsskd asit atst-clip atst-frame beats]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from earmark.audio.synth import synthesize
from earmark.teachers.finetune import FinetuneConfig, finetune
from earmark.teachers.pretrain import PretrainConfig, pretrain

TINY = {"acmsskd": ("acmsskd_tiny", {}), "asit": ("asit_tiny", dict(global_out=1024, local_out=256)),
        "atst-clip": ("atst_clip_tiny", dict(hidden=256, out=64)), "atst-frame": ("atst_frame_tiny", dict(hidden=256, out=64)),
        "beats": ("beats_tiny", dict(codes=256))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--recipes", nargs="+", default=sorted(TINY))
    parser.add_argument("--out", default=tempfile.mkdtemp(prefix="bench-pretrain-"))
    args = parser.parse_args()
    out = Path(args.out)
    data = synthesize(out / "data", clips_per_class=40, soundscapes=1)
    tune = lambda teacher, folder: json.loads((finetune(FinetuneConfig(
        teacher, str(data.clips_csv), str(folder), epochs=args.epochs, lr=1e-3, progress=False)).parent / "results.json").read_text())["test"]["accuracy"]
    print(f"{'recipe':<11} {'teacher':<16} {'samples/s':>9} {'pretrained':>10} {'scratch':>8}")
    for recipe in args.recipes:
        teacher, recipe_args = TINY[recipe]
        start = time.perf_counter()
        checkpoint = pretrain(PretrainConfig(recipe, str(data.clips_csv), str(out / recipe), teacher, recipe_args=recipe_args,
                                             steps=args.steps, batch_size=args.batch_size, lr=1e-3, clip_seconds=1.0,
                                             ckpt_every=args.steps, progress=False))
        rate = args.steps * args.batch_size / (time.perf_counter() - start)
        print(f"{recipe:<11} {teacher:<16} {rate:>9.1f} {tune(str(checkpoint), out / f'{recipe}-ft'):>10.1%} "
              f"{tune(teacher, out / f'{recipe}-scratch'):>8.1%}", flush=True)


if __name__ == "__main__":
    main()
