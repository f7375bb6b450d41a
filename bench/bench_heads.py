"""Scenes and events from one student (`distill --scenes`) against a student for each (issue 13), on demo data.

    python bench/bench_heads.py                  # synthetic demo generators, fast budget, one seed
    python bench/bench_heads.py --seed 1 --epochs 40

Systems, all tfsepnet40, no KD, the same seed:
  events  a frame detector trained on event clips mixed over the scene backgrounds (`--backgrounds`)
  both    the same command with `--scenes`: a second, softmax head learns each mixture's background scene
  scenes  a scene classifier trained on the background recordings alone (1-s crops, `--objective classify`), for
          as many optimiser steps as the mixture runs (its training set is ~10x smaller, so ~10x the epochs)
Each is heard by `earmark eval` through listen's streaming pipeline on held-out soundscapes the students never
heard (the demo's own soundscapes: a scene recording with 1-4 events on it): event F1 and PSDS1 on their strong
labels (soundscapes.tsv), scene accuracy on their scene labels (scenes.tsv). Data: synthetic only (the real
sound-effects set has no scene labels), so the figures show the mechanics and the trade-off on easy audio.

Threads: OMP_NUM_THREADS=MKL_NUM_THREADS=1 for every command unless already set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench_sed import LISTEN, earmark

STUDENT = "tfsepnet40"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-heads", help="work folder (steps whose outputs exist are not redone)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the mixture runs (events, both)")
    parser.add_argument("--clips-per-class", type=int, default=30)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    from earmark.audio.manifest import clip_fold, read_manifest
    from earmark.audio.synth import synthesize

    data = synthesize(out / "data", seed=args.seed, clips_per_class=args.clips_per_class, soundscapes=24, backgrounds=30)
    clips, recordings = read_manifest(data.clips_csv), read_manifest(data.backgrounds_tsv)
    train_clips = sum(clip_fold(c) not in (4, 5) for c in clips.clips)
    train_recordings = sum(clip_fold(c) not in (4, 5) for c in recordings.clips)
    scene_epochs = round(args.epochs * train_clips / max(train_recordings, 1))
    print(f"bench_heads: seed {args.seed}, {len(clips.clips)} event clips, {len(recordings.clips)} scene recordings; "
          f"events/both {args.epochs} epochs, scenes {scene_epochs} epochs (same steps); threads 1; commands in {log}")
    common = ["--no-kd", "--student", STUDENT, "--seed", args.seed, "--batch-size", 32]
    mixtures = ["--data", data.clips_csv, "--task", "frame", "--objective", "detect", "--backgrounds", data.backgrounds_tsv,
                "--epochs", args.epochs, *LISTEN]
    steps = {"events": [*common, *mixtures], "both": [*common, *mixtures, "--scenes"],
             "scenes": [*common, "--data", data.backgrounds_tsv, "--objective", "classify", "--epochs", scene_epochs]}
    rows = {}
    for name, options in steps.items():
        run = out / name
        if not (run / "results.json").exists():
            started = time.perf_counter()
            earmark("distill", *options, "--out", run, log=log)
            print(f"  {name}: {time.perf_counter() - started:.0f} s", flush=True)
        model = out / f"{name}.onnx"
        if not model.exists():
            earmark("export", run / "student", "--out", model, log=log)
        row = {}
        if name != "scenes":
            earmark("eval", model, data.soundscapes_tsv, "--out", out / f"eval-{name}-events", "--collar", 0.2, 0.5, *LISTEN, log=log)
            r = json.loads((out / f"eval-{name}-events" / "results.json").read_text())
            row.update(f1_02=r["events"]["0.2"]["onset"]["f1"], f1_05=r["events"]["0.5"]["onset"]["f1"], psds1=r["psds"]["psds1"])
        if name != "events":
            earmark("eval", model, data.scenes_tsv, "--out", out / f"eval-{name}-scenes", log=log)
            r = json.loads((out / f"eval-{name}-scenes" / "results.json").read_text())
            row.update(scene_accuracy=r["accuracy"], scene_macro=r["macro_accuracy"])
        rows[name] = row
    dash = lambda value, fmt: "-" if value is None else format(value, fmt)
    lines = [f"held-out demo soundscapes (synthetic): {data.soundscapes_tsv}, {data.scenes_tsv}",
             f"{'system':8s} {'F1 on@.2':>9s} {'F1 on@.5':>9s} {'PSDS1':>6s} {'scene acc':>10s} {'macro':>7s}"]
    for name, r in rows.items():
        lines.append(f"{name:8s} {dash(r.get('f1_02'), '.1%'):>9s} {dash(r.get('f1_05'), '.1%'):>9s} {dash(r.get('psds1'), '.3f'):>6s} "
                     f"{dash(r.get('scene_accuracy'), '.1%'):>10s} {dash(r.get('scene_macro'), '.1%'):>7s}")
    print("\n".join(lines))
    (out / "table.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
