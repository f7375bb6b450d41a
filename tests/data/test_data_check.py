"""`earmark data check` opens every file; bad audio is named (and skipped with --skip-bad), long clips are read by windows."""

import json

import numpy as np
import pytest
import soundfile as sf

from earmark.audio.datasets_torch import LONG_CLIP_SECONDS, ClipDataset
from earmark.audio.io import load_audio
from earmark.audio.manifest import read_manifest
from earmark.audio.sources import data_identity, open_data
from earmark.cli import main


def _wav(path, seconds=0.5, rate=16000, value=0.1):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(int(seconds * rate), value, np.float32), rate, subtype="FLOAT")
    return path


@pytest.fixture
def damaged(tmp_path):
    """A folder dataset with a 0-byte file, an executable named .wav, a NaN file and six good clips."""
    for label in ("dog", "rain"):
        for i in range(3):
            _wav(tmp_path / label / f"{i}.wav")
    (tmp_path / "dog" / "empty.wav").write_bytes(b"")
    (tmp_path / "dog" / "program.wav").write_bytes(b"\x7fELF\x02\x01\x01" + bytes(500))
    _wav(tmp_path / "rain" / "nan.wav", value=float("nan"))
    return tmp_path


def test_data_check_decodes_every_file_and_names_the_bad_ones(damaged, capsys):
    assert main(["data", "check", str(damaged)]) == 1
    err = capsys.readouterr().err
    assert "empty.wav: is empty (0 bytes)" in err and "program.wav: cannot be decoded" in err
    assert "nan.wav: contains NaN or infinite samples" in err and "3 of 9 files cannot be used" in err
    assert main(["data", "check", str(damaged), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "6 clips, 2 classes" in out and "skipped 0 bad rows and 3 bad files" in out
    assert main(["data", "check", str(damaged), "--no-decode"]) == 0  # fast: existence only


def test_training_refuses_a_nan_clip_naming_it(damaged, tmp_path, capsys):
    for bad in ("empty.wav", "program.wav"):
        (damaged / "dog" / bad).unlink()
    argv = ["distill", "--no-kd", "--student", "tfsepnet16", "--data", str(damaged), "--out", str(tmp_path / "run"),
            "--epochs", "1", "--batch-size", "8", "--val-fold", "1", "--test-fold", "2"]
    assert main(argv) == 1
    assert "nan.wav: contains NaN or infinite samples" in capsys.readouterr().err


BAD = ("empty.wav", "program.wav", "nan.wav", "notes.wav")


def _train(data, out, *extra):
    return main(["distill", "--no-kd", "--student", "tfsepnet16", "--data", str(data), "--out", str(out), "--epochs", "1",
                 "--batch-size", "4", "--val-fold", "1", "--test-fold", "2", "--workers", "0", "-q", *extra])


@pytest.mark.parametrize("bad", ["empty.wav", "notes.wav"])
def test_training_names_an_empty_or_undecodable_file_and_what_to_do(damaged, tmp_path, capsys, bad):
    for other in {"empty.wav", "program.wav", "nan.wav"} - {bad}:
        next(damaged.glob(f"*/{other}")).unlink()
    if bad == "notes.wav":
        (damaged / "rain" / bad).write_text("a text file saved as .wav\n")
    assert _train(damaged, tmp_path / "run") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and bad in err[0] and "--skip-bad" in err[0], err


def test_training_with_skip_bad_leaves_bad_files_out_and_lists_them(damaged, tmp_path, capsys):
    """A NaN WAV, a 0-byte WAV, an executable and a text file named .wav: named, counted, listed; training proceeds."""
    (damaged / "rain" / "notes.wav").write_text("a text file saved as .wav\n")
    for label in ("dog", "rain"):
        for i in range(3, 8):
            _wav(damaged / label / f"{i}.wav")
    out = tmp_path / "run"
    assert _train(damaged, out) == 1  # without the flag the first bad file stops the run
    capsys.readouterr()
    assert _train(damaged, out, "--skip-bad") == 0  # the failed run left no state to resume: the folder is free
    err = capsys.readouterr().err
    listed = (out / "skipped.txt").read_text().splitlines()
    assert sorted(line.split(": ")[0].rsplit("/", 1)[-1] for line in listed) == sorted(BAD)
    assert all(f"skipped {line}" in err for line in listed) and "left out 4 bad rows or files" in err
    assert json.loads((out / "results.json").read_text())["skipped"] == 4
    assert (out / "student" / "model.safetensors").is_file()
    assert json.loads((out / "run.json").read_text())["data"] == data_identity(open_data(damaged, skip_bad=True))  # the 16 good clips


def test_skip_bad_on_shards_says_how_to_repack_them(damaged, tmp_path, capsys):
    assert main(["data", "shard", str(damaged), str(tmp_path / "shards"), "--skip-bad"]) == 0
    assert len(open_data(tmp_path / "shards")) == 6  # the bad files were not packed
    with pytest.raises(ValueError, match="repack them without the bad files .*data shard MANIFEST OUT --skip-bad"):
        open_data(tmp_path / "shards", skip_bad=True)


def _zero_and_truncated(folder):
    """An all-zero WAV and a WAV cut to a third of the length its header gives: libsndfile reads both without a word."""
    _wav(folder / "dog" / "zero.wav", value=0.0)
    whole = _wav(folder / "rain" / "cut.wav").read_bytes()
    (folder / "rain" / "cut.wav").write_bytes(whole[:len(whole) // 3])


def test_a_wav_a_few_bytes_short_of_its_header_is_read_as_it_is(tmp_path):
    """Some writers miscount the data chunk by a few bytes (the real set's openttd files: 57-159 bytes): not truncated."""
    whole = _wav(tmp_path / "short.wav").read_bytes()
    rate = int.from_bytes(whole[28:32], "little")  # the fmt chunk's bytes per second
    (tmp_path / "short.wav").write_bytes(whole[:-int(0.005 * rate)])  # 5 ms missing: read
    assert load_audio(tmp_path / "short.wav", 16000).size > 0
    (tmp_path / "short.wav").write_bytes(whole[:-int(0.02 * rate)])  # 20 ms missing: refused
    with pytest.raises(ValueError, match="short.wav: is truncated"):
        load_audio(tmp_path / "short.wav", 16000)


def test_all_zero_and_truncated_wavs_are_named_by_data_check_and_refused_by_training(damaged, capsys):
    _zero_and_truncated(damaged)
    assert main(["data", "check", str(damaged)]) == 1
    err = capsys.readouterr().err
    assert "zero.wav: every sample is zero" in err and "cut.wav: is truncated: its header promises" in err
    assert "5 of 11 files cannot be used" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="cut.wav: is truncated"):
        load_audio(damaged / "rain" / "cut.wav", 16000)
    clips = read_manifest(damaged).filter(lambda clip: clip.path.name == "zero.wav")
    with pytest.raises(ValueError, match="zero.wav: every sample is zero"):
        ClipDataset(clips, 16000, 0.5, train=True)[0]


def test_data_shard_decodes_every_file_and_data_check_checks_shards(damaged, tmp_path, capsys):
    from earmark.audio.shards import write_shards

    _zero_and_truncated(damaged)
    assert main(["data", "shard", str(damaged), str(tmp_path / "shards")]) == 1  # nothing packed without a word
    err = capsys.readouterr().err
    assert "nan.wav: contains NaN" in err and "zero.wav: every sample is zero" in err and "5 of 11 files cannot be used" in err
    assert not (tmp_path / "shards").exists()
    assert main(["data", "shard", str(damaged), str(tmp_path / "shards"), "--skip-bad"]) == 0
    capsys.readouterr()
    assert main(["data", "check", str(tmp_path / "shards")]) == 0
    assert "6 clips in 4 shards, 2 classes" in capsys.readouterr().out
    old = write_shards(read_manifest(damaged, skip_bad=True), tmp_path / "old")  # as shards of an earlier earmark could be
    assert main(["data", "check", str(tmp_path / "old")]) == 1
    err = capsys.readouterr().err
    assert "every sample is zero" in err and "is truncated" in err and "NaN" in err and "5 of 11 clips cannot be used" in err


def test_a_csv_saved_with_a_byte_order_mark_reads(tmp_path):
    _wav(tmp_path / "audio" / "a.wav")
    (tmp_path / "m.csv").write_bytes("filename,fold,target,category\na.wav,1,0,dog\n".encode("utf-8-sig"))
    assert [c.labels for c in read_manifest(tmp_path / "m.csv").clips] == [("dog",)]


def test_labels_with_few_clips_are_reported_as_probable_typos(tmp_path, capsys):
    rows = [f"{i}.wav,1,0,dog" for i in range(4)] + ["4.wav,1,0,dgo"]
    for i in range(5):
        _wav(tmp_path / "audio" / f"{i}.wav")
    (tmp_path / "m.csv").write_text("filename,fold,target,category\n" + "\n".join(rows) + "\n")
    assert main(["data", "check", str(tmp_path / "m.csv")]) == 0
    assert "fewer than 3 clips, probable typos: 'dgo' (1)" in capsys.readouterr().out


def test_a_flat_folder_is_unlabelled_audio_and_said_so(tmp_path, capsys):
    for i in range(3):
        _wav(tmp_path / "flat" / f"{i}.wav")
    assert main(["data", "check", str(tmp_path / "flat")]) == 0
    assert "3 clips of unlabelled audio (usable by `earmark pretrain`)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="has no labels .*needs a CSV/TSV manifest or one sub-folder per class"):
        read_manifest(tmp_path / "flat").train_val_test(4, 5)
    (tmp_path / "none").mkdir()
    assert main(["data", "check", str(tmp_path / "none")]) == 1
    assert "no clips" in capsys.readouterr().err


def test_long_clips_are_read_by_windows_not_whole(tmp_path):
    rate, seconds = 4000, LONG_CLIP_SECONDS + 10
    path = tmp_path / "long" / "a.wav"
    path.parent.mkdir()
    sf.write(path, np.random.default_rng(0).uniform(-1, 1, int(seconds * rate)).astype(np.float32), rate, subtype="FLOAT")
    _wav(tmp_path / "short" / "b.wav", rate=rate)
    data = ClipDataset(read_manifest(tmp_path), rate, clip_seconds=1.0, train=True, seed=3)
    whole = load_audio(path, rate)
    for epoch in range(3):
        data.set_epoch(epoch)
        wave, start = data.window(0, np.random.default_rng(epoch))
        assert len(wave) == rate and np.array_equal(wave, whole[start:start + rate])
        assert np.array_equal(data[0]["wave"].numpy(), data[0]["wave"].numpy())  # a crop depends on (seed, epoch, index) only
    data[1]
    assert isinstance(data._cache[0], int) and isinstance(data._cache[1], np.ndarray)  # only the short clip is held
