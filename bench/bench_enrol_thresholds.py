"""Which threshold rule of `earmark adapt`'s fine-tune path carries to sounds it never trained on (issue 26).

    python bench/bench_enrol_thresholds.py W/openclonk-data-seed0/student-adapted.onnx [...] [--grid probability]   # bench_adapt.py --finetune wrote them

The fine-tune chooses each label's threshold on mixtures of the very examples it trained on, over the last quarter of
the site, and on that quarter alone (`adapt/finetune.py`). For each adapted file this bench rebuilds those timelines
(`finetune.tuning_timelines`: the seed and budget from the file's adaptation record, the examples and site from
bench_adapt's folder beside it) and hears bench_adapt's test soundscapes of the same package, then applies each rule
to the tuning counts and reports what its thresholds give on the test: onset F1 at 0.5 s (``operating.onset_hits``,
the rule's own matching, not sed_eval's: compare rows, not with `earmark eval`), detections / events. Rules, each
within the site budget as adapt counts it: adapt's own (the middle of the grid values with the best F1,
``operating.label_threshold``), the highest with the best F1 (adapt's rule before), the lowest with the best F1, and the
lowest within 0.05 / 0.1 / 0.2 of it; "test oracle" is the best any per-label thresholds reach on the test itself
(coordinate ascent), the headroom a rule could find. Per label, the events found and detections over the top of the
grid, beside the site's alarms, show what holds each threshold up. ``--grid probability`` tries the grid adapt used
before (0.05 to 0.95 by 0.05, then 0.97, 0.98, 0.99, 0.995, 0.998) instead of its logit steps.

Threads: ONNX Runtime and BLAS one each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from earmark.adapt import read_enrolment  # noqa: E402
from earmark.adapt.enrol import AdaptSettings, timeline  # noqa: E402
from earmark.adapt.finetune import HELD_SITE, tuning_timelines  # noqa: E402
from earmark.adapt.operating import GRID, best_f1_indices, event_f1, grid_counts, label_threshold  # noqa: E402
from earmark.audio.events import EventSettings  # noqa: E402
from earmark.audio.io import load_audio  # noqa: E402
from earmark.audio.manifest import read_manifest  # noqa: E402
from earmark.runtime import load_backend  # noqa: E402

GRIDS = {"adapt": GRID, "probability": tuple(round(float(g), 3) for g in np.r_[np.linspace(0.05, 0.95, 19), 0.97, 0.98, 0.99, 0.995, 0.998])}
RULES = ("highest best", "lowest best", "lowest within 0.05", "lowest within 0.1", "lowest within 0.2")  # beside adapt's own


def choose(rule: str, counts: dict, references: Counter, share: float, grid: tuple[float, ...]) -> dict[str, int]:
    """Grid index per label: the lowest (``highest best``: the highest) grid value within ``rule``'s tolerance of the
    best F1, among those whose site alarms fit ``share`` (``operating.best_f1_indices``); the top where none finds an event."""
    tolerance = 0.0 if rule.endswith("best") else float(rule.split()[-1])
    pick = max if rule == "highest best" else min
    chosen = {}
    for label, per_grid in counts.items():
        near_best = best_f1_indices(per_grid, references[label], share, tolerance)
        chosen[label] = pick(near_best) if near_best else len(grid) - 1
    return chosen


def test_timelines(backend, scapes: Path) -> list[tuple[list, list, float]]:
    """bench_adapt's test soundscapes heard by the file: (timeline, reference events, seconds)."""
    rate = backend.metadata.frontend.sample_rate
    heard = []
    for clip in read_manifest(scapes).clips:
        wave = load_audio(clip.path, rate)
        heard.append((timeline(backend, wave), list(clip.events), wave.size / rate))
    return heard


def report(model: Path, grid: tuple[float, ...]) -> str:
    folder = model.parent  # bench_adapt's PACKAGE-seedS folder: examples/, site.wav, test/scapes/
    backend = load_backend(model, threads=1)
    meta, record = backend.metadata, backend.metadata.adaptation
    labels = list(meta.labels)
    settings = AdaptSettings(**{k: tuple(v) if k == "snr" else v for k, v in record["settings"].items() if k in AdaptSettings.__dataclass_fields__})
    events = EventSettings(median=int(meta.postprocess["median"]), min_duration=meta.postprocess["min_duration"],
                           max_gap=meta.postprocess["max_gap"])
    enrolment = read_enrolment(folder / "examples", [folder / "site.wav"], meta.frontend.sample_rate, tuple(labels), True)
    with tempfile.TemporaryDirectory() as tmp:
        held = Path(tmp) / "held.wav"
        sf.write(held, enrolment.background[int(round((1 - HELD_SITE) * enrolment.background.size)):], enrolment.sample_rate)
        mixtures, site = tuning_timelines(model, enrolment, held, settings)
    tuning = grid_counts(mixtures, site, labels, events, grid)
    tuned_refs = Counter(label for _, refs, _ in mixtures for _, _, label in refs)
    share = settings.max_false_alarms * sum(seconds for _, seconds in site) / 3600 / len(labels)
    test = test_timelines(backend, folder / "test" / "scapes" / "soundscapes.tsv")
    tested = grid_counts(test, [], labels, events, grid)
    refs = Counter(label for _, references, _ in test for _, _, label in references)
    total = sum(refs.values())

    def score(chosen: dict[str, int]) -> tuple[float, int]:
        hits = sum(tested[label][i][0] for label, i in chosen.items())
        detections = sum(tested[label][i][1] for label, i in chosen.items())
        return event_f1(hits, detections, total), detections

    lines = [f"\n{model} ({meta.precision}; post-processing {meta.postprocess}; site share {share:.2f} alarms a label)",
             "| rule | onset F1 0.5 s (test) | detections / events | thresholds |", "|---|---|---|---|"]
    adapts = {label: label_threshold(tuning[label], tuned_refs[label], share) for label in labels}  # adapt's rule
    for rule, chosen in [("middle best (adapt's)", adapts)] + [(r, choose(r, tuning, tuned_refs, share, grid)) for r in RULES]:
        value, detections = score(chosen)
        lines.append(f"| {rule} | {100 * value:.1f}% | {detections} / {total} | "
                     + ", ".join(f"{label} {grid[i]:g}" for label, i in chosen.items()) + " |")
    oracle = {label: len(grid) - 1 for label in labels}
    for _ in range(3):
        for label in labels:
            oracle[label] = max(range(len(grid)), key=lambda i: (score({**oracle, label: i})[0], i))
    value, detections = score(oracle)
    lines.append(f"| test oracle | {100 * value:.1f}% | {detections} / {total} | "
                 + ", ".join(f"{label} {grid[i]:g}" for label, i in oracle.items()) + " |")
    top = [i for i, g in enumerate(grid) if g >= 0.5]
    lines.append("\nper label, from 0.5 up the grid: test found/detections; site alarms")
    for label in labels:
        lines.append(f"  {label} ({refs[label]} test events): " + " ".join(f"{grid[i]:g}:{tested[label][i][0]}/{tested[label][i][1]}" for i in top)
                     + "; site " + " ".join(str(tuning[label][i][2]) for i in top))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="adapted .onnx files in bench_adapt.py's PACKAGE-seedS folders")
    parser.add_argument("--grid", choices=GRIDS, default="adapt", help="the thresholds tried: adapt's own (logit steps), or the probability grid it used before")
    args = parser.parse_args()
    for model in args.models:
        print(report(model, GRIDS[args.grid]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
