"""`earmark data synth OUT` (the demo dataset) and `earmark data check MANIFEST` (a summary, or the first bad row)."""

from __future__ import annotations

import argparse
from collections import Counter


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    synth = sub.add_parser("synth", help="write the procedural demo dataset")
    synth.add_argument("out")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--clips-per-class", type=int, default=40)
    synth.add_argument("--soundscapes", type=int, default=20)
    check = sub.add_parser("check", help="summarise a manifest, stopping at its first bad row")
    check.add_argument("manifest")
    check.add_argument("--kind", default="auto")
    check.add_argument("--skip-bad", action="store_true", help="report and skip bad rows instead of stopping")
    shard = sub.add_parser("shard", help="pack a manifest into WebDataset tar shards")
    shard.add_argument("manifest")
    shard.add_argument("out")
    shard.add_argument("--clips-per-shard", type=int, default=1000)


def run(args: argparse.Namespace) -> int:
    from earmark.audio.manifest import read_manifest

    if args.action == "synth":
        from earmark.audio.synth import synthesize

        paths = synthesize(args.out, args.seed, args.clips_per_class, args.soundscapes)
        print(f"wrote {paths.clips_csv}, {paths.soundscapes_tsv} and {paths.scenes_tsv} (audio in {paths.root / 'audio'})")
        return 0
    manifest = read_manifest(args.manifest, args.kind, skip_bad=getattr(args, "skip_bad", False))
    if args.action == "shard":
        from earmark.audio.shards import write_shards

        shards = write_shards(manifest, args.out, args.clips_per_shard)
        print(f"wrote {len(shards)} shards of {len(manifest)} clips to {args.out}")
        return 0
    counts = Counter(label for clip in manifest.clips for label in clip.labels)
    events = sum(len(c.events) for c in manifest.clips)
    print(f"{args.manifest}: {len(manifest)} clips, {len(manifest.labels)} classes, task {manifest.task}, "
          f"{'multi' if manifest.multi_label else 'single'}-label{f', {events} events' if events else ''}")
    for label in manifest.labels:
        print(f"  {label:<24} {counts[label]:>6}")
    if manifest.skipped:
        print(f"skipped {len(manifest.skipped)} bad rows")
    return 0
