"""Sound event detection on held-out soundscapes: the clip pipeline against detectors trained on mixtures (issue 13).

    python bench/bench_sed.py                                   # demo data (synthetic), fast budget
    python bench/bench_sed.py --real /work/data/real_sfx        # and real sound effects (shared/data/build_real_sfx.py)
    python bench/bench_sed.py --budget full --real DIR          # a budget for a machine with time to spare
    python bench/bench_sed.py --real DIR --frame-teacher tfsepnet64   # (c) distilled from a bigger student instead
    python bench/bench_sed.py --real DIR --frame-teacher tfsepnet64 --seed 1 --test-scapes 120   # same models, 4x the test
    python bench/bench_sed.py --real DIR --frame-teacher tfsepnet64 --test-scapes 120 --retune   # same models, thresholds tuned again
    python bench/bench_sed.py --skip-demo --real DIR --causal w k1 kt --budget short   # windowed against causal INT8 (issue 29)

Systems, all with the same seed, student (tfsepnet40), teacher (atst_frame_tiny from scratch) and epochs:
  (a) clip pipeline: the teacher fine-tuned on clips (clip task, detect objective), the student distilled on
      clips with clip KD and QAT, INT8 ONNX
  (b) detector trained on mixtures (clips over --backgrounds, new mixtures every epoch), frame task, no KD; one
      threshold for all classes, tuned for the most validation events at <= 60 false alarms per hour per class
      (--max-false-alarms)
  (c) as (b) with frame KD from the teacher fine-tuned on the same mixtures (frame task): the teacher hears each
      training mixture (--online-teacher), float ONNX
  (d) (c) after QAT, INT8 ONNX
Every system is then heard by `earmark eval` (listen's streaming pipeline, --median 3) on held-out
soundscapes: event F1 (sed_eval; onset and onset+offset, collars 0.2 and 0.5 s), PSDS1 (sed_scores_eval) and
false alarms per minute of background-only audio. Each step is an `earmark` command, printed as it runs.

--causal (real data only) trains instead the windowed tfsepnet40 (w) and causal students (k: crnn_causal on 4-s
crops, k1: on 1-s crops, kt: crnn_causal_tiny on 1-s crops) alike: mixtures, no KD, QAT (the causal ones weight-only),
INT8 ONNX; each is heard on the held-out soundscapes, with detection latency and thread CPU seconds per audio second
(bench_causal.measure, one thread); a causal one also scores all of them joined into one stream (minutes of state),
compared with each heard apart from zero state.

Held out: demo data -- its own soundscapes (made apart from its clips) over scene backgrounds; real data -- every
clip and background of the packages in HELD_OUT, mixed into soundscapes by `earmark data mix`; training sees
the other packages only, so test sources were never heard (a class needs 5 training and 2 held-out clips).

Threads: OMP_NUM_THREADS=MKL_NUM_THREADS=1 for every command unless already set; listen runs one thread.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

HELD_OUT = ("wesnoth-1.16-data", "openttd-opensfx", "lincity-ng-data")
MIN_CLIPS = {False: 5, True: 2}  # a class is kept with at least 5 training and 2 held-out clips
BUDGETS = {  # epochs for teacher fine-tuning, distillation and QAT; soundscapes to evaluate on real data
    "fast": {"teacher": 12, "student": 30, "qat": 2, "clips_per_class": 12, "test_scapes": 30},
    "short": {"teacher": 4, "student": 10, "qat": 1, "clips_per_class": 12, "test_scapes": 30},  # a shared 2-core machine
    "full": {"teacher": 40, "student": 100, "qat": 5, "clips_per_class": 60, "test_scapes": 60},
}
STUDENT, TEACHER = "tfsepnet40", "atst_frame_tiny"
LISTEN = ["--median", "3", "--min-duration", "0.1", "--max-gap", "0.2"]
BUDGET = ["--max-false-alarms", "60"]  # detectors tune their threshold for the most events at <= 1 false alarm per minute per class


def earmark(*args: str | Path, log: Path) -> None:
    """Run one `earmark` command (printed); its output goes to ``log``; a failure stops the bench with that log's tail."""
    command = [sys.executable, "-m", "earmark.cli", *map(str, args)]
    print("  $ earmark " + " ".join(map(str, args)), flush=True)
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **os.environ}
    with open(log, "a") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}); see {log}:\n" + "".join(open(log).readlines()[-25:]))


def real_split(root: Path, out: Path, scapes: int, seed: int, log: Path, per_class: int = 0) -> tuple[Path, Path, Path]:
    """(training clips CSV, training backgrounds folder, held-out soundscapes TSV) from a build_real_sfx.py folder, and
    beside them ``train_distractors.csv``, the training packages' clips of the other classes;
    ``per_class`` > 0 mixes the soundscapes from at most that many held-out clips a class (drawn with ``seed``), so that
    the test events spread over the classes instead of following the packages' counts."""
    rows, stems = [], set()
    for r in csv.DictReader(open(root / "meta.csv")):  # a package may ship one sound twice (mace.ogg and mace.wav): keep the first
        stem = str(Path(r["filename"]).with_suffix(""))
        if stem not in stems:
            stems.add(stem)
            rows.append(r)
    counts = defaultdict(lambda: {False: 0, True: 0})
    for r in rows:
        counts[r["category"]][r["package"] in HELD_OUT] += 1
    both = sorted(label for label, sides in counts.items() if all(sides[held] >= MIN_CLIPS[held] for held in (False, True)))
    (out / "audio").mkdir(parents=True, exist_ok=True)
    for r in rows:  # games reuse file names (every voice pack has a Nooo.ogg): link each clip under its whole path
        r["link"] = re.sub(r"[^A-Za-z0-9._-]+", "_", r["filename"])
        if not (out / "audio" / r["link"]).exists():
            (out / "audio" / r["link"]).symlink_to(root / r["filename"])
    tests = [r for r in rows if r["category"] in both and r["package"] in HELD_OUT]
    if per_class:
        tests = [r for label in both for r in random.Random(seed).sample(
            [r for r in tests if r["category"] == label], min(per_class, counts[label][True]))]
    suffix = f"-even{per_class}" if per_class else ""
    others = sorted({r["category"] for r in rows} - set(both))  # the training packages' other sounds: distractors
    for name, chosen, names in (("train_clips", [r for r in rows if r["category"] in both and r["package"] not in HELD_OUT], both),
                                (f"test{suffix}_clips", tests, both),
                                ("train_distractors", [r for r in rows if r["category"] in others and r["package"] not in HELD_OUT], others)):
        with open(out / f"{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["filename", "fold", "target", "category"])
            writer.writerows([r["link"], r["fold"], names.index(r["category"]), r["category"]] for r in chosen)
    for name, held in (("train", False), ("test", True)):
        folder = out / f"{name}_backgrounds"
        folder.mkdir(exist_ok=True)
        for r in csv.DictReader(open(root / "backgrounds.csv")):
            link = folder / Path(r["filename"]).name
            if (r["package"] in HELD_OUT) == held and not link.exists():
                link.symlink_to(root / r["filename"])
    test = out / f"test_scapes-{scapes}{suffix}"  # a larger held-out set (--test-scapes) is mixed beside, the models are reused
    if not (test / "soundscapes.tsv").exists():
        earmark("data", "mix", out / f"test{suffix}_clips.csv", out / "test_backgrounds", test, "--count", scapes, "--duration", 20,
                "--events", 1, 4, "--background-only", 0.2, "--sample-rate", 32000, "--seed", seed + 1,
                "--skip-bad", log=log)  # the --more build ships one truncated openttd horse
    print(f"  real: {len(both)} classes with at least {MIN_CLIPS[False]} training and {MIN_CLIPS[True]} held-out clips: "
          + ", ".join(f"{label} ({counts[label][False]}/{counts[label][True]})" for label in both))
    return out / "train_clips.csv", out / "train_backgrounds", test / "soundscapes.tsv"


def frame_teacher_step(name: str, clips: Path, mixtures: list, budget: dict, seed: int, out: Path) -> tuple[str, list, Path]:
    """(folder, command, checkpoint) of the frame teacher for (c): a teacher family fine-tuned, or a bigger student trained
    on the same mixtures for twice the student's epochs (`distill --no-kd`; a student checkpoint can teach)."""
    from earmark.students import list_students

    if name == TEACHER:
        return "teacher-mix", ["finetune", name, "--data", clips, "--task", "frame", *mixtures, "--epochs", budget["teacher"],
                               "--lr", 1e-3, "--out", out / "teacher-mix"], out / "teacher-mix" / "teacher"
    if name not in list_students():
        raise SystemExit(f"--frame-teacher {name}: pass {TEACHER} or a student family ({', '.join(list_students())}).")
    folder = f"teacher-{name}"
    return folder, ["distill", "--no-kd", "--student", name, "--data", clips, "--seed", seed, "--epochs", 2 * budget["student"],
                    "--batch-size", 32, "--task", "frame", *mixtures, *LISTEN, *BUDGET, "--out", out / folder], out / folder / "student"


def train_systems(clips: Path, backgrounds: Path, out: Path, budget: dict, seed: int, log: Path, frame_teacher: str = TEACHER,
                  retune: bool = False) -> dict[str, Path]:
    """The four systems' ONNX files (each step skipped when its output exists, so a bench can be resumed); ``retune``
    tunes the detectors' thresholds again with BUDGET (`earmark tune`, for runs trained under an older rule) and
    exports them again."""
    common = ["--student", STUDENT, "--data", clips, "--seed", seed, "--epochs", budget["student"], "--batch-size", 32]
    mixtures = ["--objective", "detect", "--backgrounds", backgrounds, "--mix-snr", 0, 15]
    teacher_folder, teacher_command, teacher = frame_teacher_step(frame_teacher, clips, mixtures, budget, seed, out)
    kd = "c" if frame_teacher == TEACHER else f"c-{frame_teacher}"
    steps = [
        ("teacher-clips", ["finetune", TEACHER, "--data", clips, "--task", "clip", "--objective", "detect", "--epochs",
                           budget["teacher"], "--lr", 1e-3, "--out", out / "teacher-clips"]),
        (teacher_folder, teacher_command),
        ("a", ["distill", "--teacher", out / "teacher-clips" / "teacher", *common, "--task", "clip", "--objective", "detect",
               "--qat", "--qat-epochs", budget["qat"], "--out", out / "a"]),
        ("b", ["distill", "--no-kd", *common, "--task", "frame", *mixtures, *LISTEN, *BUDGET, "--out", out / "b"]),
        (kd, ["distill", "--teacher", teacher, "--online-teacher", *common, "--task", "frame", *mixtures, *LISTEN,
              *BUDGET, "--qat", "--qat-epochs", budget["qat"], "--out", out / kd]),
    ]
    for name, args in steps:
        if not (out / name / "results.json").exists():
            started = time.perf_counter()
            earmark(*args, log=log)
            print(f"    {name}: {time.perf_counter() - started:.0f} s", flush=True)
    models = {"a": out / "a" / "student-int8", "b": out / "b" / "student", "c": out / kd / "student", "d": out / kd / "student-int8"}
    if retune:
        for folder in ("b", kd):
            earmark("tune", out / folder, *BUDGET, log=log)
    onnx = {}
    for name, checkpoint in models.items():
        onnx[name] = out / f"{checkpoint.parent.name}-{checkpoint.name}.onnx"
        if retune and name != "a":
            onnx[name].unlink(missing_ok=True)
        if not onnx[name].exists():
            earmark("export", checkpoint, "--out", onnx[name], log=log)
    return onnx


def evaluate(models: dict[str, Path], soundscapes: Path, out: Path, log: Path) -> dict[str, dict]:
    """`earmark eval` of each model on the held-out soundscapes; the results.json of each."""
    results = {}
    for name, model in models.items():
        folder = out / f"eval-{soundscapes.parent.name}-{model.stem}"
        earmark("eval", model, soundscapes, "--out", folder, "--collar", 0.2, 0.5, "--timelines", 3, *LISTEN, log=log)
        results[name] = json.loads((folder / "results.json").read_text())
    return results


SYSTEMS = {"a": "(a) clip pipeline, KD + QAT INT8", "b": "(b) mixtures, no KD", "c": "(c) mixtures, frame KD from {}",
           "d": "(d) (c) QAT INT8"}


CAUSAL = {  # --causal NAME...: the windowed INT8 detector against causal INT8 ones, trained alike (mixtures, no KD, QAT)
    "w": ("windowed tfsepnet40, 1-s crops", ["--student", "tfsepnet40"]),
    "k": ("causal crnn_causal, 4-s crops", ["--student", "crnn_causal", "--clip-seconds", 4, "--int8-scope", "weights"]),
    "k1": ("causal crnn_causal, 1-s crops", ["--student", "crnn_causal", "--int8-scope", "weights"]),
    "kt": ("causal crnn_causal_tiny, 1-s crops", ["--student", "crnn_causal_tiny", "--int8-scope", "weights"]),
}


def causal_systems(names: list[str], clips: Path, backgrounds: Path, out: Path, budget: dict, seed: int, log: Path) -> dict[str, Path]:
    """The INT8 ONNX file of each CAUSAL system in ``names`` (each trained unless its results exist)."""
    onnx = {}
    for name in names:
        if not (out / name / "results.json").exists():
            started = time.perf_counter()
            earmark("distill", "--no-kd", *CAUSAL[name][1], "--data", clips, "--seed", seed, "--epochs", budget["student"],
                    "--batch-size", 32, "--task", "frame", "--objective", "detect", "--backgrounds", backgrounds, "--mix-snr", 0, 15,
                    *LISTEN, *BUDGET, "--qat", "--qat-epochs", budget["qat"], "--out", out / name, log=log)
            print(f"    {name}: {time.perf_counter() - started:.0f} s", flush=True)
        onnx[name] = out / f"{name}-student-int8.onnx"
        if not onnx[name].exists():
            earmark("export", out / name / "student-int8", "--out", onnx[name], log=log)
    return onnx


def state_drift(model: Path, soundscapes: Path, settle: float = 2.0) -> dict[str, float]:
    """A stateful model over the held-out soundscapes joined into one stream (minutes of state) against each heard apart
    from zero state: the largest frame-score difference after each file's first ``settle`` seconds, and the share of
    those frames whose decision (score >= the model's threshold) differs."""
    import numpy as np
    import soundfile as sf

    from earmark.runtime import StreamingClassifier

    files = list(dict.fromkeys(r["filename"] for r in csv.DictReader(open(soundscapes), delimiter="\t")))
    waves = [sf.read(soundscapes.parent / "audio" / f, dtype="float32") for f in files]

    def scores(wave: np.ndarray, rate: int) -> np.ndarray:
        classifier = StreamingClassifier(model)
        return np.stack([s.probs for r in [*classifier.push(wave, rate), *classifier.flush()] for s in r.segments])

    meta = StreamingClassifier(model).metadata
    thresholds = np.array([meta.threshold(label) for label in meta.labels])
    joined, start, diffs, flips = scores(np.concatenate([w for w, _ in waves]), waves[0][1]), 0, [], []
    for wave, rate in waves:  # each file a whole number of hops long, so the stream's frames fall on its grid
        frames = round(len(wave) / rate / meta.frame_hop_seconds)
        apart, within = scores(wave, rate)[:frames], joined[start:start + frames]
        start += frames
        settled = slice(int(settle / meta.frame_hop_seconds), None)
        diffs.append(np.abs(apart - within)[settled].max())
        flips.append(((apart >= thresholds) != (within >= thresholds))[settled].mean())
    return {"max_difference": float(max(diffs)), "decisions_changed": float(np.mean(flips)), "minutes": len(joined) * meta.frame_hop_seconds / 60}


def causal_table(title: str, results: dict[str, dict], cpu: dict[str, float], drift: dict[str, dict]) -> str:
    """One row per CAUSAL system: onset F1 at 0.5 s, detections/events, false alarms per minute, latency median / p90,
    thread CPU seconds per audio second (one thread) and, for a stateful one, its state drift over one stream."""
    lines = [title, f"{'system':36s} {'F1 on@.5':>8s} {'det/events':>11s} {'FA/min':>7s} {'latency ms p50/p90':>18s} {'CPU s/s':>8s} "
                    f"{'stream: max diff, decisions changed':>36s}"]
    for name, r in results.items():
        loose, d = r["events"]["0.5"], drift.get(name)
        lines.append(f"{CAUSAL[name][0]:36s} {loose['onset']['f1']:8.1%} {loose['detections']:>5d}/{loose['references']:<5d} "
                     f"{r['false_alarms']['per_minute']:7.2f} {latency_cell(r['latency']):>18s} {cpu[name]:8.4f} "
                     + (f"{d['max_difference']:>24.2e}, {d['decisions_changed']:.2%} ({d['minutes']:.0f} min)" if d else f"{'-':>36s}"))
    return "\n".join(lines)


def latency_cell(latency: dict) -> str:
    """Median / p90 detection latency in ms, or "-" without hits."""
    return "-" if not latency["hits"] else f"{latency['median'] * 1000:.0f} / {latency['p90'] * 1000:.0f}"


def table(title: str, results: dict[str, dict], frame_teacher: str = TEACHER) -> str:
    """One row per system: F1 onset / onset+offset at 0.2 and 0.5 s, PSDS1, detections/events, false alarms per minute,
    and the detection latency (reference onset -> ON in stream time, hits at the 0.5-s collar) median / p90 in ms."""
    lines = [title, f"{'system':34s} {'F1 on@.2':>8s} {'+off@.2':>8s} {'F1 on@.5':>8s} {'+off@.5':>8s} {'PSDS1':>6s} "
                    f"{'det/events':>11s} {'FA/min':>7s} {'latency ms p50/p90':>18s}"]
    for name, r in results.items():
        tight, loose = r["events"]["0.2"], r["events"]["0.5"]
        lines.append(f"{SYSTEMS[name].format(frame_teacher):34s} {tight['onset']['f1']:8.1%} {tight['onset_offset']['f1']:8.1%} "
                     f"{loose['onset']['f1']:8.1%} {loose['onset_offset']['f1']:8.1%} {r['psds']['psds1']:6.3f} "
                     f"{loose['detections']:>5d}/{loose['references']:<5d} {r['false_alarms']['per_minute']:7.2f} "
                     f"{latency_cell(r['latency']):>18s}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-sed", help="work folder (steps whose outputs exist are not redone)")
    parser.add_argument("--real", help="a folder built by build_real_sfx.py (meta.csv, backgrounds.csv)")
    parser.add_argument("--budget", default="fast", choices=sorted(BUDGETS))
    parser.add_argument("--skip-demo", action="store_true", help="only the real data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--student-epochs", type=int, help="the students' float epochs (default: the budget's)")
    parser.add_argument("--test-scapes", type=int, help="held-out real soundscapes to evaluate on (default: the budget's); "
                        "trained models in --out are reused, so a larger test set costs only the evaluation")
    parser.add_argument("--retune", action="store_true", help="tune the trained detectors' thresholds again with this bench's "
                        "criterion (`earmark tune`) and export them again before evaluating; nothing is trained again")
    parser.add_argument("--causal", nargs="+", choices=sorted(CAUSAL), help="with --real, instead of (a)-(d): the windowed "
                        "INT8 detector (w) against causal INT8 ones (k, k1, kt), the causal ones also over one stream of all the "
                        "held-out soundscapes")
    parser.add_argument("--frame-teacher", default=TEACHER, help=f"the frame teacher of (c): {TEACHER} (fine-tuned from scratch), "
                        "or a student family trained on the mixtures for twice the student's epochs (e.g. tfsepnet64)")
    args = parser.parse_args()
    budget, out = {**BUDGETS[args.budget], **({"student": args.student_epochs} if args.student_epochs else {})}, Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    print(f"bench_sed: budget {args.budget} {budget}, seed {args.seed}, threads 1, commands logged in {log}")
    tables = []
    if not args.skip_demo:
        from earmark.audio.synth import synthesize

        print("demo data (synthetic)")
        data = synthesize(out / "demo" / "data", seed=args.seed, clips_per_class=budget["clips_per_class"], soundscapes=6)
        models = train_systems(data.clips_csv, data.backgrounds, out / "demo", budget, args.seed, log, args.frame_teacher, args.retune)
        tables.append(table(f"demo data (synthetic): {data.soundscapes_tsv}", evaluate(models, data.soundscapes_tsv, out / "demo", log),
                            args.frame_teacher))
    if args.real:
        print(f"real sound effects: {args.real}, held out: {', '.join(HELD_OUT)}")
        clips, backgrounds, scapes = real_split(Path(args.real), out / "real", args.test_scapes or budget["test_scapes"], args.seed, log)
        if args.causal:
            return causal_main(args.causal, clips, backgrounds, scapes, out, budget, args.seed, log)
        models = train_systems(clips, backgrounds, out / "real", budget, args.seed, log, args.frame_teacher, args.retune)
        tables.append(table(f"real sound effects, held-out packages: {scapes}", evaluate(models, scapes, out / "real", log), args.frame_teacher))
    print("\n" + "\n\n".join(tables))
    (out / f"tables-{args.frame_teacher}-{args.test_scapes or budget['test_scapes']}.txt").write_text("\n\n".join(tables) + "\n")
    return 0


def causal_main(names: list[str], clips: Path, backgrounds: Path, scapes: Path, out: Path, budget: dict, seed: int, log: Path) -> int:
    """--causal: train, hear each file apart and (the causal ones) as one stream, measure CPU; print and save the table."""
    from bench_causal import measure

    models = causal_systems(names, clips, backgrounds, out / "real", budget, seed, log)
    results = evaluate(models, scapes, out / "real", log)
    drift = {name: state_drift(model, scapes) for name, model in models.items() if name != "w"}
    cpu = {name: measure(model, 60.0)["cpu_per_audio_s"] for name, model in models.items()}
    text = causal_table(f"real sound effects, held-out packages, seed {seed}: {scapes}", results, cpu, drift)
    print("\n" + text)
    (out / f"tables-causal-{scapes.parent.name}.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
