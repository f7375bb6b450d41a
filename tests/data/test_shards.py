"""WebDataset shards: `earmark data shard` round trip, the index, and streams split by rank and worker."""

import json
import tarfile

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from earmark.audio.datasets_torch import ClipDataset, collate
from earmark.audio.manifest import clip_fold, read_manifest
from earmark.audio.shards import ShardSet
from earmark.audio.sources import eval_loader, first_clips, open_data, train_dataset
from earmark.audio.synth import synthesize
from earmark.cli import main


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("synth"), seed=3, clips_per_class=5, soundscapes=4)


@pytest.fixture(scope="module")
def shards(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    assert main(["data", "shard", str(synth.clips_csv), str(out), "--clips-per-shard", "3"]) == 0
    return out


def test_shard_cli_keeps_the_encoded_files_and_writes_an_index(synth, shards):
    manifest = read_manifest(synth.clips_csv)
    index = json.loads((shards / "index.json").read_text())
    assert index["clips"] == len(manifest) == sum(s["count"] for s in index["shards"])
    assert index["labels"] == manifest.labels.to_list() and index["source_fingerprint"] == manifest.fingerprint()
    assert max(s["count"] for s in index["shards"]) == 3
    clips = manifest.by_id()
    for entry in index["shards"]:
        with tarfile.open(shards / entry["name"]) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        headers = [json.loads(v) for k, v in sorted(members.items()) if k.endswith(".json")]
        assert [h["id"] for h in headers] == entry["ids"]
        for name, header in zip(sorted(k for k in members if k.endswith(".json")), headers):
            clip = clips[header["id"]]
            assert members[name.replace(".json", ".wav")] == clip.path.read_bytes()  # the original bytes, not re-encoded
            assert header["labels"] == list(clip.labels) and header["fold"] == clip_fold(clip) == entry["fold"]


def test_shards_read_back_as_the_manifest_does(synth, shards):
    manifest, data = read_manifest(synth.clips_csv), open_data(shards)
    assert sorted(data.ids) == sorted(manifest.ids) and data.labels == manifest.labels
    expected = {b: w for batch in eval_loader(manifest, 16000, 1.0, 8) for b, w in zip(batch["id"], batch["wave"])}
    got = {b: (w, t) for batch in eval_loader(data, 16000, 1.0, 8, workers=2) for b, w, t in zip(batch["id"], batch["wave"], batch["target"])}
    assert set(got) == set(expected)
    for clip in manifest.clips:
        wave, target = got[clip.id]
        assert torch.equal(wave, expected[clip.id]) and target[manifest.labels.index(clip.labels[0])] == 1
    for (clip, wave), original in zip(first_clips(data, 32000, 4), data.ids[:4]):
        assert clip.id == original and wave.shape == (32000,)


def test_a_split_reads_only_its_folds_shards(synth, shards):
    manifest, data = read_manifest(synth.clips_csv), open_data(shards)
    for ours, theirs in zip(data.train_val_test(4, 5), manifest.train_val_test(4, 5)):
        assert sorted(ours.ids) == sorted(theirs.ids) and len(ours) == len(theirs)


def test_strong_labels_travel_in_the_shards(synth, tmp_path):
    assert main(["data", "shard", str(synth.soundscapes_tsv), str(tmp_path), "--max-shard-mb", "0.5"]) == 0
    manifest, data = read_manifest(synth.soundscapes_tsv), open_data(tmp_path)
    sizes = [s["bytes"] for s in json.loads((tmp_path / "index.json").read_text())["shards"]]
    assert len(sizes) > 1 and data.task == "frame"  # a 10-s clip is 0.64 MB: one per shard under the limit
    ours = next(iter(eval_loader(data, 16000, 10.0, 4, frame_hop=0.1)))
    theirs = next(iter(DataLoader(ClipDataset(manifest, 16000, 10.0, frame_hop=0.1), batch_size=4, collate_fn=collate)))
    frames = dict(zip(theirs["id"], theirs["frame_target"]))
    assert sorted(ours["id"]) == sorted(frames) and any(t.any() for t in frames.values())
    assert all(torch.equal(t, frames[i]) for i, t in zip(ours["id"], ours["frame_target"]))


def test_brace_patterns_and_list_files_select_shards(shards, tmp_path):
    names = sorted(p.name for p in shards.glob("*.tar"))
    assert len(open_data(f"{shards}/{{000000..000002}}.tar")) == sum(s.count for s in ShardSet.open(shards).shards[:3])
    listing = tmp_path / "train.txt"
    listing.write_text("\n".join(str(shards / n) for n in names[1:]) + "\n")
    assert len(open_data(listing)) == len(open_data(shards)) - ShardSet.open(shards).shards[0].count
    with pytest.raises(ValueError, match="not in"):
        open_data(f"{shards}/{{000000..009999}}.tar")


def test_every_clip_once_per_epoch_across_ranks_and_workers(shards, monkeypatch):
    data = open_data(shards)
    seen: dict[int, list[list[str]]] = {}
    lengths = set()
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        stream = train_dataset(data, 16000, 0.5, batch_size=4, seed=1)
        lengths.add(len(stream))
        loader = DataLoader(stream, batch_size=None, num_workers=2, persistent_workers=True)
        for epoch in (0, 1):
            stream.set_epoch(epoch)
            batches = list(loader)
            assert len(batches) == len(stream)  # every rank steps the same number of times
            seen.setdefault(epoch, []).append([i for b in batches for i in b["id"]])
    assert len(lengths) == 1
    for epoch, ranks in seen.items():
        everything = ranks[0] + ranks[1]
        assert sorted(everything) == sorted(data.ids)  # each clip exactly once per epoch over 2 ranks x 2 workers
    assert seen[0][0] != seen[1][0]  # the shard order and shuffle buffer are seeded per epoch


def test_a_truncated_shard_is_named(shards, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    tar = copy / "000000.tar"
    tar.write_bytes(tar.read_bytes()[:1536])  # one header and a bit of the first member
    with pytest.raises(ValueError, match="000000.tar"):
        list(eval_loader(open_data(copy), 16000, 1.0, 4))
