"""`earmark data synth OUT` (the demo dataset), `earmark data mix CLIPS BACKGROUNDS OUT` (strong-labelled soundscapes),
`earmark data check MANIFEST` (decodes every file, names what is wrong) and `earmark data shard MANIFEST OUT` (WebDataset shards)."""

from __future__ import annotations

import argparse
import io
import sys
from collections import Counter
from pathlib import Path

from earmark.audio.io import SKIP_HINT
from earmark.audio.manifest import READERS
from earmark.audio.options import AT_LEAST_ONE, NON_NEGATIVE, NON_NEGATIVE_NUMBER, NUMBER, PROBABILITY, SECONDS


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    action = lambda name, text: sub.add_parser(name, help=text, description=text, formatter_class=parser.formatter_class)
    synth = action("synth", "write the procedural demo dataset: event clips, soundscapes and event-free backgrounds")
    synth.add_argument("out", help="writes OUT/clips.csv, OUT/soundscapes.tsv, OUT/scenes.tsv and OUT/audio/, and event-free "
                       "background recordings in OUT/backgrounds/ with their scenes in OUT/backgrounds.tsv (for --backgrounds, --scenes)")
    synth.add_argument("--seed", type=NON_NEGATIVE, default=0, help="seeds every sound and placement")
    synth.add_argument("--clips-per-class", type=AT_LEAST_ONE, default=40, help="one-second clips per event class")
    synth.add_argument("--soundscapes", type=NON_NEGATIVE, default=20, help="10-second soundscapes with strong labels")
    synth.add_argument("--backgrounds", type=NON_NEGATIVE, default=8, help="10-second event-free background recordings")
    synth.add_argument("--extra-test-clips", type=NON_NEGATIVE, default=0,
                       help="more clips per class in the test fold (5) only: a larger test set, the same training data")
    mix = action("mix", "place clip-dataset events over background recordings: soundscapes + strong labels")
    mix.add_argument("clips", help="a clip manifest (single- or multi-label, or strong labels) whose clips become events")
    mix.add_argument("backgrounds", help="a folder of background recordings (searched recursively) or a manifest of them")
    mix.add_argument("out", help="writes OUT/audio/mix-NNNNN.wav and OUT/soundscapes.tsv (DESED style, with a fold column)")
    mix.add_argument("--count", type=AT_LEAST_ONE, default=100, help="soundscapes to write")
    mix.add_argument("--duration", type=SECONDS, default=10.0, help="seconds per soundscape")
    mix.add_argument("--events", type=NON_NEGATIVE, nargs=2, default=[1, 4], metavar=("LOW", "HIGH"), help="events per soundscape")
    mix.add_argument("--snr", type=NUMBER, nargs=2, default=[0.0, 15.0], metavar=("LOW", "HIGH"), help="event-to-background dB")
    mix.add_argument("--max-overlap", type=AT_LEAST_ONE, default=1, help="events sounding at once (1: no overlap)")
    mix.add_argument("--background-only", type=PROBABILITY, default=0.1, help="share of soundscapes with no event")
    mix.add_argument("--sample-rate", type=AT_LEAST_ONE, help="output sample rate (default: the first clip's rate)")
    mix.add_argument("--seed", type=NON_NEGATIVE, default=0, help="seeds every placement, gain and choice")
    mix.add_argument("--skip-bad", action="store_true",
                     help="decode every clip first and leave out bad rows and files, each named, instead of stopping at the first")
    check = action("check", "decode every file of a manifest and summarise it; bad rows and files are named")
    check.add_argument("manifest", help="a CSV/TSV manifest (ESC-50, TAU, DESED, multi-label), a folder of class folders or of audio, "
                       "or shards of `earmark data shard`")
    check.add_argument("--kind", default="auto", choices=["auto", *READERS], help="the manifest format (auto: from its header)")
    check.add_argument("--skip-bad", action="store_true", help="report and skip bad rows and files instead of failing")
    check.add_argument("--no-decode", action="store_true", help="check only that the files exist (fast)")
    check.add_argument("--min-clips", type=NON_NEGATIVE, default=3, help="labels with fewer clips are reported as probable typos")
    shard = action("shard", "pack a manifest into WebDataset tar shards")
    shard.add_argument("manifest", help="the manifest whose clips are packed")
    shard.add_argument("out", help="the folder of .tar shards to write")
    shard.add_argument("--clips-per-shard", type=AT_LEAST_ONE, default=1000, help="clips per .tar file")
    shard.add_argument("--max-shard-mb", type=NON_NEGATIVE_NUMBER, default=0.0, help="also start a new shard before one grows past this (0: no limit)")
    shard.add_argument("--skip-bad", action="store_true", help="report and skip bad manifest rows and files instead of stopping (every file is decoded either way)")


def run(args: argparse.Namespace) -> int:
    from earmark.audio.manifest import bad_files, read_manifest

    if args.action == "synth":
        from earmark.audio.synth import synthesize

        paths = synthesize(args.out, args.seed, args.clips_per_class, args.soundscapes, backgrounds=args.backgrounds,
                           extra_test_clips=args.extra_test_clips)
        print(f"wrote {paths.clips_csv}, {paths.soundscapes_tsv} and {paths.scenes_tsv} (audio in {paths.root / 'audio'}, "
              f"event-free backgrounds in {paths.backgrounds})")
        return 0
    if args.action == "mix":
        from earmark.audio.mixing import MixSettings, write_mixtures

        settings = MixSettings(args.duration, tuple(args.events), tuple(args.snr), args.max_overlap, args.background_only)
        mixed = write_mixtures(args.clips, args.backgrounds, args.out, args.count, settings, args.seed, args.sample_rate,
                               skip_bad=args.skip_bad)
        print(f"wrote {mixed.soundscapes} soundscapes ({sum(mixed.events.values())} events) to {mixed.audio} "
              f"and their strong labels to {mixed.manifest}")
        for label, n in sorted(mixed.events.items()):
            print(f"  {label:<24} {n:>6}")
        missing = sorted(set(read_manifest(args.clips).labels) - set(mixed.events))
        if missing:
            print(f"warning: no soundscape holds {missing}; a model trained on {mixed.manifest} will not know them "
                  "(pass a larger --count)", file=sys.stderr)
        print(f"next: earmark distill --data {mixed.manifest} --objective detect --task frame ...")
        return 0
    if args.action == "check" and Path(args.manifest).suffix.lower() not in (".csv", ".tsv"):  # a CSV never needs torch
        from earmark.audio.shards import looks_like_shards

        if looks_like_shards(args.manifest):
            return _check_shards(args)
    manifest = read_manifest(args.manifest, getattr(args, "kind", "auto"), skip_bad=args.skip_bad)
    if args.action == "shard":
        from earmark.audio.shards import write_shards

        manifest = _usable(manifest, args, bad_files(manifest))  # shards never hold a file training would refuse
        if manifest is None:
            return 1
        shards = write_shards(manifest, args.out, args.clips_per_shard, args.max_shard_mb)
        print(f"wrote {len(shards.shards)} shards of {len(shards)} clips and their index to {args.out}")
        print(f"next: earmark pretrain asit --data {args.out}")
        return 0
    skipped_rows = len(manifest.skipped)
    bad = {} if args.no_decode else bad_files(manifest)
    manifest = _usable(manifest, args, bad)
    if manifest is None:
        return 1
    if not manifest.clips:
        print(f"{args.manifest}: no clips; expected a CSV/TSV manifest, a folder of class folders, a folder of audio files, "
              "or shards written by `earmark data shard`.", file=sys.stderr)
        return 1
    print(f"{args.manifest}: {manifest.describe()}")
    events = Counter(label for clip in manifest.clips for *_, label in clip.events)
    _label_counts(manifest.labels, Counter(label for clip in manifest.clips for label in clip.labels), args.min_clips, events)
    if skipped_rows or bad:
        print(f"skipped {skipped_rows} bad rows and {len(bad)} bad files")
    return 0


def _usable(manifest, args: argparse.Namespace, bad: dict[str, str]):
    """The manifest without its ``bad`` files (each named on stderr), or None when they are not to be skipped."""
    for problem in bad.values():
        print(f"{'skipped ' if args.skip_bad else ''}{problem}", file=sys.stderr)
    if bad and not args.skip_bad:
        print(f"{args.manifest}: {len(bad)} of {len(manifest)} files cannot be used (above); repair or remove them, "
              "or pass --skip-bad to report and skip them.", file=sys.stderr)
        return None
    return manifest.filter(lambda clip: clip.id not in bad) if bad else manifest


def _check_shards(args: argparse.Namespace) -> int:
    """``data check`` of WebDataset shards: every sample decoded from its tar, bad ones named, labels counted."""
    from earmark.audio.io import AudioError, check_encoded
    from earmark.audio.shards import ShardSet

    shards = ShardSet.open(args.manifest)
    counts, events, bad = Counter(), Counter(), 0
    for _, clip, audio in shards.samples(list(range(len(shards.shards))), 0, len(shards)):
        counts.update(clip.labels)
        events.update(label for *_, label in clip.events)
        try:
            if not args.no_decode:
                check_encoded(io.BytesIO(audio), f"{clip.path.name} ({clip.id})")
        except AudioError as err:
            bad += 1
            print(str(err).replace(f" ({SKIP_HINT})", ""), file=sys.stderr)
    if bad:
        print(f"{args.manifest}: {bad} of {len(shards)} clips cannot be used (above); pack the shards again from a "
              "repaired manifest (`earmark data shard` refuses such files).", file=sys.stderr)
        return 1
    print(f"{args.manifest}: {len(shards)} clips in {len(shards.shards)} shards, {len(shards.labels)} classes, task {shards.task}")
    _label_counts(shards.labels, counts, args.min_clips, events)
    return 0


def _label_counts(labels, counts: Counter, min_clips: int, events: Counter) -> None:
    """Clips per label (and events per label, for strong labels) under a header saying which, and the labels so rare
    that they are probably typos."""
    print(f"  {'label':<24} {'clips':>6}" + (f" {'events':>7}" if events else ""))
    for label in labels:
        print(f"  {label:<24} {counts[label]:>6}" + (f" {events[label]:>7}" if events else ""))
    rare = [f"{label!r} ({counts[label]})" for label in labels if counts[label] < min_clips]
    if rare:
        print(f"labels with fewer than {min_clips} clips, probable typos: {', '.join(rare)}")

