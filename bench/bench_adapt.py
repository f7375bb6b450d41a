"""Enrolment on a source the detector never heard: `earmark adapt` with 5 examples per class and 2 minutes of its site.

    python bench/bench_adapt.py --real /work/realdata               # real sound effects (shared/data/build_real_sfx.py --more)
    python bench/bench_adapt.py --real DIR --held-out ufoai-sound --seed 1
    python bench/bench_adapt.py --real DIR --finetune                 # the fine-tune path (torch): adapt the base checkpoint
    python bench/bench_adapt.py --real DIR --finetune --student crnn_causal --base-teacher W/base/student   # causal, KD

1. A base detector (tfsepnet40, frame task, trained on mixtures without KD, or with --base-teacher by frame KD from that
   checkpoint, then QAT INT8) learns from every
   package except HELD_OUT (at most CLIPS_PER_CLASS clips a class), over those packages' backgrounds.
2. For one held-out package: ENROL clips of each of its classes with at least ENROL + 1 clips, and BACKGROUND_SECONDS
   cut from the start of each of its ambiences in proportion (a site recording holds all of its sounds), are the
   user's examples and site recording; the rest of its clips, over the rest of its ambiences, are mixed into test soundscapes (`earmark data mix`).
3. `earmark adapt` of the fp32 and of the INT8 export (timed), or with --finetune of the base checkpoint (the fine-tune
   path: one run writes fp32 and INT8), then `earmark eval` of the base and adapted files on the
   test soundscapes (onset F1 at 0.2 and 0.5 s collars, class-agnostic F1, false alarms per minute of background).

Threads: OMP_NUM_THREADS=MKL_NUM_THREADS=1 for every command; adapt and listen run one ONNX Runtime thread.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from bench_sed import LISTEN, STUDENT, earmark  # noqa: E402

HELD_OUT = ("openclonk-data", "ufoai-sound")  # never heard by the base detector; one of them is enrolled per run
CLIPS_PER_CLASS = 60
MIN_TRAINING_CLIPS = 5
ENROL = 5
BACKGROUND_SECONDS = 120.0
EPOCHS = {"student": 12, "qat": 1}
RATE = 32000
TEST_SCAPES = 40


def link_rows(root: Path, rows: list[dict], out: Path) -> list[dict]:
    """Symlink each clip under a flat unique name (games reuse file names, and ship one sound as .wav and .ogg: the id is
    the name without its suffix) and return the rows with ``link`` set."""
    out.mkdir(parents=True, exist_ok=True)
    for r in rows:
        r["link"] = re.sub(r"[^A-Za-z0-9-]+", "_", r["filename"]) + Path(r["filename"]).suffix
        if not (out / r["link"]).exists():
            (out / r["link"]).symlink_to(root / r["filename"])
    return rows


def write_clips(path: Path, rows: list[dict], labels: list[str]) -> Path:
    """An ESC-50 style manifest of these rows (their files under ``audio/`` beside it)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "fold", "target", "category"])
        writer.writerows([r["link"], r["fold"], labels.index(r["category"]), r["category"]] for r in rows)
    return path


def base_split(root: Path, out: Path, seed: int) -> tuple[Path, Path]:
    """(training clips CSV, training backgrounds folder) of every package outside HELD_OUT."""
    rows = [r for r in csv.DictReader(open(root / "meta.csv")) if r["package"] not in HELD_OUT]
    by_label = defaultdict(list)
    for r in rows:
        by_label[r["category"]].append(r)
    rng = random.Random(seed)
    kept = {label: rng.sample(clips, min(len(clips), CLIPS_PER_CLASS)) for label, clips in by_label.items()
            if len(clips) >= MIN_TRAINING_CLIPS}
    chosen = link_rows(root, [r for clips in kept.values() for r in clips], out / "audio")
    backgrounds = out / "train_backgrounds"
    backgrounds.mkdir(exist_ok=True)
    for r in csv.DictReader(open(root / "backgrounds.csv")):
        link = backgrounds / Path(r["filename"]).name
        if r["package"] not in HELD_OUT and not link.exists():
            link.symlink_to(root / r["filename"])
    return write_clips(out / "train_clips.csv", chosen, sorted(kept)), backgrounds


def train_base(clips: Path, backgrounds: Path, out: Path, seed: int, log: Path, epochs: int = EPOCHS["student"],
               student: str = STUDENT, teacher: Path | None = None) -> dict[str, Path]:
    """The base detector's fp32 and INT8 ONNX files (training skipped when its checkpoints exist: adapt needs only the
    body, so the base's own threshold tuning may be cut short); with ``teacher``, frame KD from it on every mixture."""
    run = out / "base"
    if not (run / "student-int8" / "earmark.json").exists():
        started = time.perf_counter()
        kd = ["--teacher", teacher, "--online-teacher"] if teacher else ["--no-kd"]
        earmark("distill", *kd, "--student", student, "--data", clips, "--seed", seed, "--epochs", epochs,
                "--batch-size", 32, "--task", "frame", "--objective", "detect", "--backgrounds", backgrounds, "--mix-snr", 0, 15,
                *LISTEN, "--max-false-alarms", 60, "--qat", "--qat-epochs", EPOCHS["qat"], "--out", run, log=log)
        print(f"    base: {time.perf_counter() - started:.0f} s", flush=True)
    files = {"fp32": out / "base-fp32.onnx", "int8": out / "base-int8.onnx"}
    for precision, checkpoint in (("fp32", run / "student"), ("int8", run / "student-int8")):
        if not files[precision].exists():
            earmark("export", checkpoint, "--out", files[precision], log=log)
    return files


def enrolment_split(root: Path, package: str, out: Path, seed: int, log: Path) -> tuple[Path, Path, Path]:
    """(examples folder, site recording, test soundscapes TSV) of one held-out package (see the module docstring)."""
    from earmark.audio.io import load_audio

    rows = [r for r in csv.DictReader(open(root / "meta.csv")) if r["package"] == package]
    by_label = defaultdict(list)
    for r in rows:
        by_label[r["category"]].append(r)
    rng = random.Random(seed)
    examples, test = out / "examples", []
    for label, clips in sorted(by_label.items()):
        if len(clips) <= ENROL:
            continue
        rng.shuffle(clips)
        link_rows(root, clips[:ENROL], examples / label)
        test += clips[ENROL:]
    test = link_rows(root, test, out / "test" / "audio")
    clips_csv = write_clips(out / "test" / "clips.csv", test, sorted({r["category"] for r in test}))
    backgrounds = sorted(r["filename"] for r in csv.DictReader(open(root / "backgrounds.csv")) if r["package"] == package)
    waves = [load_audio(root / f, RATE) for f in backgrounds]
    share = BACKGROUND_SECONDS * RATE / sum(w.size for w in waves)  # the site's every ambience, as a recording of one place holds
    cuts = [int(share * w.size) for w in waves]
    site, rest = out / "site.wav", out / "test" / "backgrounds" / "rest.wav"
    rest.parent.mkdir(parents=True, exist_ok=True)
    sf.write(site, np.concatenate([w[:c] for w, c in zip(waves, cuts)]), RATE)
    sf.write(rest, np.concatenate([w[c:] for w, c in zip(waves, cuts)]), RATE)
    scapes = out / "test" / "scapes"
    if not (scapes / "soundscapes.tsv").exists():
        earmark("data", "mix", clips_csv, rest.parent, scapes, "--count", TEST_SCAPES, "--duration", 20, "--events", 1, 4,
                "--background-only", 0.2, "--sample-rate", RATE, "--seed", seed + 1, log=log)
    print(f"  {package}: {len(by_label)} classes, enrolled {sum(1 for _ in examples.iterdir())} with {ENROL} examples each, "
          f"{len(test)} test clips; site {sum(cuts) / RATE:.0f} s, test background {sum(w.size - c for w, c in zip(waves, cuts)) / RATE:.0f} s", flush=True)
    return examples, site, scapes / "soundscapes.tsv"


def run_adapt(model: Path, examples: Path, site: Path, out: Path, seed: int, log: Path, *extra) -> tuple[Path, float]:
    """`earmark adapt` of one model (timed; skipped when its output exists)."""
    adapted = out / f"{model.stem}-adapted.onnx"
    started = time.perf_counter()
    if not adapted.exists():
        earmark("adapt", model, examples, "--background", site, "--new-labels", *LISTEN, "--seed", seed, *extra, "--out", adapted, log=log)
    return adapted, time.perf_counter() - started


def heard(model: Path, scapes: Path, out: Path, log: Path) -> dict:
    """`earmark eval` of one model on the test soundscapes: its results.json."""
    folder = out / f"eval-{model.stem}"
    if not (folder / "results.json").exists():
        earmark("eval", model, scapes, "--collar", 0.2, 0.5, "--timelines", 0, "--out", folder, log=log)
    return json.loads((folder / "results.json").read_text())


def row(name: str, r: dict, seconds: float | None) -> str:
    """One table row: onset F1 at 0.2 / 0.5 s, class-agnostic onset F1 at 0.5 s, detections / events, FA per minute,
    detection latency over the hits at 0.5 s (median / p90, stream time)."""
    e2, e5, lag = r["events"]["0.2"], r["events"]["0.5"], r["latency"]
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"
    latency = f"{1000 * lag['median']:.0f} / {1000 * lag['p90']:.0f} ms ({lag['hits']})" if lag["hits"] else "-"
    return (f"| {name} | {pct(e2['onset']['f1'])} / {pct(e5['onset']['f1'])} | {pct(e5['any_label']['onset']['f1'])} | "
            f"{e5['detections']} / {e5['references']} | {r['false_alarms']['per_minute']:.2f} | {latency} | "
            f"{'-' if seconds is None else f'{seconds:.0f} s'} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, required=True, help="a build_real_sfx.py --more folder")
    parser.add_argument("--held-out", default=HELD_OUT[0], choices=HELD_OUT, help="the package enrolled and tested")
    parser.add_argument("--seed", type=int, default=0, help="seeds the base training, the enrolment split and the mixtures")
    parser.add_argument("--out", type=Path, default=Path("bench-adapt"), help="work folder (steps already done are reused)")
    parser.add_argument("--finetune", nargs="?", const="", metavar="OPTIONS",
                        help="adapt the base checkpoint itself (the fine-tune path, fp32 and INT8), with these extra adapt options "
                             "(one string, e.g. '--steps 300 --body-lr 0')")
    parser.add_argument("--base-epochs", type=int, default=EPOCHS["student"], help="the base detector's float epochs")
    parser.add_argument("--student", default=STUDENT, help="the base detector's family (crnn_causal: a causal, stateful "
                        "detector; its INT8 file comes from weight-only QAT inside adapt)")
    parser.add_argument("--base-teacher", type=Path, help="a frame-task checkpoint that teaches the base by frame KD on every "
                        "training mixture (e.g. a windowed run's OUT/base/student for a causal base); default: no KD")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "log.txt"
    base = train_base(*base_split(args.real, args.out, args.seed), args.out, args.seed, log, args.base_epochs, args.student,
                      args.base_teacher)
    enrol = args.out / f"{args.held_out}-seed{args.seed}"
    examples, site, scapes = enrolment_split(args.real, args.held_out, enrol, args.seed, log)
    lines = ["| model | onset F1 0.2 s / 0.5 s | any label 0.5 s | detections / events | FA per min | latency p50 / p90 (hits) | adapt took |",
             "|---|---|---|---|---|---|---|"]
    if args.finetune is not None:  # one fine-tune writes both files; its time is theirs
        adapted, seconds = run_adapt(args.out / "base" / "student", examples, site, enrol, args.seed, log, "--int8",
                                     *args.finetune.split())
        files = {"fp32": adapted, "int8": adapted.with_name(f"{adapted.stem}-int8.onnx")}
        for precision, model in files.items():
            lines.append(row(f"fine-tuned, {precision}", heard(model, scapes, enrol, log), seconds))
    for precision, model in [] if args.finetune is not None else base.items():
        adapted, seconds = run_adapt(model, examples, site, enrol, args.seed, log)
        lines.append(row(f"enrolled, {precision}", heard(adapted, scapes, enrol, log), seconds))
    print(f"\nheld out: {args.held_out}, seed {args.seed}\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
