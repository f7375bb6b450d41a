"""KD against labels alone on the demo's data, over seeds: is what the demo shows a result or one seed's luck?

    python bench/bench_demo_kd.py --out /tmp/demo-kd                                # seeds 0-3: no KD, the demo's KD, KD at T = 1
    python bench/bench_demo_kd.py --out DIR --seeds 0 1 --variants no-kd kd --threads 2

The demo's data (`earmark data synth`, the demo's budget) with 100 extra test clips a class: the training folds are the
demo's to the byte, and the test fold holds 896 clips instead of 96, so one clip is 0.1 point, not 1. Every run is the
demo's student command (`earmark.demo.student_arguments`) with one seed and the variant's flags, without threshold
tuning (accuracy is the figure); its test accuracy is what `earmark distill` wrote to results.json. The teacher of the
KD variants is the demo's: the no-KD runs of seeds 1 and 0 averaged, so `no-kd` runs first. Runs go two at a time
(one per core), each on --threads threads (the demo trains every network on one); a run whose results exist is not
redone, so an interrupted bench picks up where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from earmark.audio.manifest import clip_fold, read_manifest
from earmark.audio.synth import TEST_FOLD, synthesize
from earmark.demo import FULL, KD_FLAGS, TEACHER_SEEDS, student_arguments, teacher_accuracy

EXTRA_TEST_CLIPS = 100
VARIANTS = {  # name -> (what it is, distill flags)
    "no-kd": ("labels alone (the demo's baseline)", ["--no-kd"]),
    "kd": ("the demo's KD: " + " ".join(KD_FLAGS), KD_FLAGS),
    "kd-t1": ("the same at T = 1 (EfficientAT's BCE KD)", [*KD_FLAGS, "--temperature", "1.0"]),  # the last value counts
}


def train(out: Path, variant: str, seed: int, arguments: list[str], threads: int) -> float:
    """One run's test accuracy (trained unless its results exist)."""
    run = out / f"{variant}-s{seed}"
    results = run / "results.json"
    if not results.is_file():
        flags = VARIANTS[variant][1]
        teachers = [] if variant == "no-kd" else [a for s in TEACHER_SEEDS for a in ("--teacher", out / f"no-kd-s{s}" / "student")]
        command = [sys.executable, "-m", "earmark.cli", "distill", *arguments, *flags, *map(str, teachers), "--seed", str(seed),
                   "--no-tune", "--out", str(run), "--force", "-q"]
        print(f"  $ OMP_NUM_THREADS={threads} earmark " + " ".join(command[3:]), flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        with open(out / f"{variant}-s{seed}.log", "w") as log:
            if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode:
                raise SystemExit(f"{variant} seed {seed} failed; see {log.name} in {out}")
    return json.loads(results.read_text())["float"]["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["no-kd", "kd", "kd-t1"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (two runs share the machine)")
    parser.add_argument("--epochs", type=int, default=FULL.epochs)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = synthesize(args.out / "data", seed=0, clips_per_class=FULL.clips_per_class, soundscapes=FULL.soundscapes,
                      backgrounds=FULL.backgrounds, extra_test_clips=EXTRA_TEST_CLIPS)
    arguments = student_arguments(data, args.epochs)
    variants = ["no-kd", *[v for v in args.variants if v != "no-kd"]]  # the teacher's members are no-KD runs
    seeds = {v: args.seeds for v in variants}
    seeds["no-kd"] = sorted(set(args.seeds) | set(TEACHER_SEEDS if len(variants) > 1 else ()))
    accuracy: dict[str, dict[int, float]] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for variant in variants:
            runs = {seed: pool.submit(train, args.out, variant, seed, arguments, args.threads) for seed in seeds[variant]}
            accuracy[variant] = {seed: run.result() for seed, run in runs.items()}
    test_clips = sum(clip_fold(c) == TEST_FOLD for c in read_manifest(data.clips_csv).clips)
    print(f"\nTest accuracy on the {test_clips} clips of fold {TEST_FOLD}, {args.epochs} epochs, {args.threads} thread(s) a run:")
    print("| variant | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |")
    print("|---|" + "---:|" * (len(args.seeds) + 1))
    for variant in variants:
        values = [accuracy[variant][s] for s in args.seeds]
        print(f"| {variant}: {VARIANTS[variant][0]} | " + " | ".join(f"{v:.1%}" for v in values) + f" | {np.mean(values):.1%} |")
    if len(variants) > 1:
        print(f"| the teacher: no-kd seeds {' and '.join(map(str, TEACHER_SEEDS))}, outputs averaged | "
              f"{teacher_accuracy(args.out / f'{variants[1]}-s{args.seeds[0]}'):.1%} |")


if __name__ == "__main__":
    main()
