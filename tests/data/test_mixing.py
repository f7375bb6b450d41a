"""Soundscape mixing: strong labels where the events really are, overlap and fold limits, seeds, `earmark data mix`."""

import numpy as np
import pytest
import soundfile as sf
import torch

from earmark.audio import PRESETS
from earmark.audio.manifest import read_manifest
from earmark.audio.mixing import MixSettings, SoundscapeMixer, active_span, find_backgrounds
from earmark.cli import main

RATE = 16000
TONE_ON, TONE_OFF = 0.3037, 0.6521  # not on the 10 ms trimming grid


def _tone_clip(path, freq):
    t = np.arange(RATE) / RATE
    wave = np.where((t >= TONE_ON) & (t < TONE_OFF), 0.5 * np.sin(2 * np.pi * freq * t), 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), RATE, subtype="FLOAT")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixing")
    rows = ["filename,fold,target,category"]
    for fold, (label, freq) in enumerate([("low", 300), ("mid", 1000), ("high", 3000)], start=1):
        for k in range(2):
            _tone_clip(root / "audio" / f"{label}{k}.wav", freq)
            rows.append(f"{label}{k}.wav,{fold},{fold - 1},{label}")
    (root / "clips.csv").write_text("\n".join(rows) + "\n")
    rng = np.random.default_rng(0)
    for k in range(3):
        (root / "bg" / "sub").mkdir(parents=True, exist_ok=True)
        sf.write(root / "bg" / "sub" / f"amb{k}.wav", (0.01 * rng.standard_normal(3 * RATE)).astype(np.float32), RATE)
    return root


def _onsets_from_energy(audio, noise_rms, hop=80):
    """Onset and offset (s) of the loud stretch, from 5 ms frames."""
    rms = np.sqrt(np.mean(audio[: audio.size // hop * hop].reshape(-1, hop) ** 2, axis=1))
    loud = np.flatnonzero(rms > 10 * noise_rms)
    return loud[0] * hop / RATE, (loud[-1] + 1) * hop / RATE


def test_an_event_placed_at_t_is_labelled_at_t_within_one_frame(data):
    mixer = SoundscapeMixer(read_manifest(data / "clips.csv"), find_backgrounds(data / "bg"), RATE,
                            MixSettings(duration=4.0, events=(1, 1), snr=(30, 30), background_only=0.0))
    frame = PRESETS["cpjku"].hop_seconds
    for seed in range(5):
        scape = mixer.mix(np.random.default_rng(seed))
        (onset, offset, label), = scape.events
        heard_on, heard_off = _onsets_from_energy(scape.audio, 0.01)
        assert abs(heard_on - onset) <= frame and abs(heard_off - offset) <= frame
        assert label in ("low", "mid", "high") and onset > 0.0  # the clip's silent lead-in is not part of the event
        assert offset - onset == pytest.approx(TONE_OFF - TONE_ON, abs=frame)


def test_snr_overlap_negatives_and_seeds(data):
    clips, backgrounds = read_manifest(data / "clips.csv"), find_backgrounds(data / "bg")
    assert len(backgrounds) == 3  # found recursively
    mixer = SoundscapeMixer(clips, backgrounds, RATE, MixSettings(duration=3.0, events=(4, 4), snr=(10, 10), max_overlap=1))
    for seed in range(5):
        scape = mixer.mix(np.random.default_rng(seed))
        spans = sorted((on, off) for on, off, _ in scape.events)
        assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:]))  # no two events overlap
    a, b = mixer.mix(np.random.default_rng(7)), mixer.mix(np.random.default_rng(7))
    assert np.array_equal(a.audio, b.audio) and a.events == b.events
    assert not np.array_equal(a.audio, mixer.mix(np.random.default_rng(8)).audio)
    negatives = mixer.with_settings(background_only=1.0).mix(np.random.default_rng(0))
    assert negatives.events == [] and negatives.audio.std() == pytest.approx(0.01, rel=0.1)
    one = mixer.with_settings(events=(1, 1), background_only=0.0, snr=(10, 10)).mix(np.random.default_rng(3))
    on, off, _ = one.events[0]
    inside = one.audio[int(on * RATE):int(off * RATE)]
    event_rms = np.sqrt(np.mean(inside ** 2) - 0.01 ** 2)  # the event's power is what the background does not explain
    assert 20 * np.log10(event_rms / 0.01) == pytest.approx(10, abs=0.5)


def test_multi_label_and_strong_labelled_clips_keep_all_their_labels(data):
    (data / "ml.csv").write_text('filename,labels,fold\nlow0.wav,"low,tone",1\nmid0.wav,mid,2\n')
    ml = read_manifest(data / "ml.csv")
    assert [c.fold for c in ml.clips] == [1, 2]
    mixer = SoundscapeMixer(ml.filter(lambda c: c.id == "low0"), find_backgrounds(data / "bg"), RATE,
                            MixSettings(duration=2.0, events=(1, 1), background_only=0.0))
    scape = mixer.mix(np.random.default_rng(0))
    assert sorted(label for *_, label in scape.events) == ["low", "tone"] and len({e[:2] for e in scape.events}) == 1
    (data / "strong.tsv").write_text("filename\tonset\toffset\tevent_label\tfold\nlow1.wav\t0.25\t0.5\tbeep\t3\n")
    strong = read_manifest(data / "strong.tsv")
    assert strong.clips[0].fold == 3
    scape = SoundscapeMixer(strong, find_backgrounds(data / "bg"), RATE,
                            MixSettings(duration=2.0, events=(1, 1), background_only=0.0)).mix(np.random.default_rng(1))
    (onset, offset, label), = scape.events
    assert label == "beep" and offset - onset == pytest.approx(0.25)


def test_active_span_trims_silence_only():
    wave = np.zeros(RATE, np.float32)
    wave[4000:8000] = 1.0
    assert active_span(wave, RATE) == (4000, 8000)
    assert active_span(np.zeros(RATE, np.float32), RATE) == (0, RATE)


def test_data_mix_writes_soundscapes_a_strong_manifest_with_folds(data, tmp_path, capsys):
    out = tmp_path / "mix"
    code = main(["data", "mix", str(data / "clips.csv"), str(data / "bg"), str(out), "--count", "6", "--duration", "3",
                 "--snr", "5", "10", "--events", "1", "2", "--background-only", "0", "--seed", "3"])
    assert code == 0 and "soundscapes.tsv" in capsys.readouterr().out
    manifest = read_manifest(out / "soundscapes.tsv")
    assert manifest.task == "frame" and len(manifest) == 6 and all(c.path.is_file() for c in manifest.clips)
    by_fold = {1: "low", 2: "mid", 3: "high"}  # each fold's clips carry one label, so a mixture shows its fold's clips only
    for clip in manifest.clips:
        assert clip.events and {label for *_, label in clip.events} == {by_fold[clip.fold]}
        assert all(0 <= on < off <= 3.0 for on, off, _ in clip.events)
        assert sf.info(str(clip.path)).duration == pytest.approx(3.0)
    again = tmp_path / "again"
    main(["data", "mix", str(data / "clips.csv"), str(data / "bg"), str(again), "--count", "6", "--duration", "3",
          "--snr", "5", "10", "--events", "1", "2", "--background-only", "0", "--seed", "3"])
    assert (again / "soundscapes.tsv").read_text() == (out / "soundscapes.tsv").read_text()


def test_bad_mix_input_gets_one_sentence(data, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["data", "mix", str(data / "clips.csv"), str(tmp_path / "empty"), str(tmp_path / "o")]) == 1
    assert "holds no background recordings" in capsys.readouterr().err
    assert main(["data", "mix", str(data / "clips.csv"), str(data / "bg"), str(tmp_path / "o"), "--snr", "10", "0"]) == 1
    assert "inconsistent" in capsys.readouterr().err


def test_data_mix_names_a_truncated_clip_and_leaves_it_out_with_skip_bad(data, tmp_path, capsys):
    clips = tmp_path / "clips.csv"
    clips.write_text((data / "clips.csv").read_text() + "cut.wav,1,0,low\n")
    for wav in (data / "audio").iterdir():
        (tmp_path / wav.name).symlink_to(wav)
    whole = (data / "audio" / "low0.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(whole[:len(whole) // 3])  # the header still promises the whole second
    argv = ["data", "mix", str(clips), str(data / "bg"), str(tmp_path / "mix"), "--count", "12", "--duration", "2",
            "--events", "2", "2", "--background-only", "0"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "cut.wav: is truncated" in err and "data mix leave them out with --skip-bad" in err
    assert main([*argv, "--skip-bad"]) == 0
    out, err = capsys.readouterr()
    assert "cut.wav: is truncated" in err and "wrote 12 soundscapes" in out
    assert len(read_manifest(tmp_path / "mix" / "soundscapes.tsv")) == 12


def test_training_mixtures_are_new_each_epoch_and_the_same_on_resume(data):
    from earmark.audio.mixture_dataset import MixtureDataset

    clips = read_manifest(data / "clips.csv")
    mixer = SoundscapeMixer(clips, find_backgrounds(data / "bg"), RATE, MixSettings(duration=1.0, events=(1, 1), background_only=0.0))
    train = MixtureDataset(mixer, frame_hop_seconds=0.05, train=True, seed=5)
    train.set_epoch(2)
    item = train[3]
    assert item["event_ids"][0] == clips.clips[3].id  # every clip is placed once per epoch
    resumed = MixtureDataset(mixer, frame_hop_seconds=0.05, train=True, seed=5)
    resumed.set_epoch(2)
    assert torch.equal(resumed[3]["wave"], item["wave"])
    train.set_epoch(3)
    assert not torch.equal(train[3]["wave"], item["wave"])
    frames = item["frame_target"].numpy()
    label = clips.labels.index(clips.clips[3].labels[0])
    active = np.flatnonzero(frames[:, label])
    assert active.size and frames.sum() == active.size and item["target"][label] == 1  # the event's frames, nothing else
    evaluation = MixtureDataset(mixer, frame_hop_seconds=0.05)
    evaluation.set_epoch(7)
    assert torch.equal(evaluation[1]["wave"], MixtureDataset(mixer, frame_hop_seconds=0.05)[1]["wave"])


def test_distractors_sound_in_the_mixture_unlabelled_and_leave_the_events_as_they_were(data):
    clips, backgrounds = read_manifest(data / "clips.csv"), find_backgrounds(data / "bg")
    settings = MixSettings(duration=3.0, events=(1, 1), snr=(30, 30), background_only=0.0, max_overlap=1, distractors=(1, 1))
    others = clips.filter(lambda c: c.labels == ("high",))  # 3 kHz tones, a sound the labelled mixer below never names
    plain = SoundscapeMixer(clips.filter(lambda c: c.labels != ("high",)), backgrounds, RATE, settings)
    mixer = SoundscapeMixer(plain.clips, backgrounds, RATE, settings, [c.path for c in others.clips])
    assert mixer.with_settings(duration=2.0).distractors == mixer.distractors
    for seed in range(4):
        alone, with_distractor = plain.mix(np.random.default_rng(seed)), mixer.mix(np.random.default_rng(seed))
        assert with_distractor.events == alone.events and with_distractor.sources == alone.sources
        (onset, offset, _), = alone.events
        extra = with_distractor.audio - alone.audio
        heard_on, heard_off = _onsets_from_energy(extra, 0.001)
        assert heard_off <= onset + 0.01 or heard_on >= offset - 0.01  # placed beside the event (overlap limit 1)
        spectrum = np.abs(np.fft.rfft(extra))
        assert np.argmax(spectrum) * RATE / extra.size == pytest.approx(3000, abs=2)  # the distractor is the 3 kHz tone
    with pytest.raises(ValueError, match="events and distractors LOW <= HIGH"):
        MixSettings(distractors=(2, 1))
