"""The recording chain that training events may pass through: each stage does what it claims, and the mixer applies it
to training events only, reproducibly."""

import numpy as np
import pytest

from earmark.audio.chain import band_limit, random_eq, recording_chain, room
from earmark.audio.manifest import read_manifest
from earmark.audio.mixing import MixSettings, SoundscapeMixer, find_backgrounds

from .test_mixing import RATE, data  # noqa: F401 (the module's tone clips and backgrounds)

NOISE = np.random.default_rng(0).standard_normal(32000).astype(np.float32)


def _power(wave, rate, low, high):
    spectrum, freqs = np.abs(np.fft.rfft(wave)) ** 2, np.fft.rfftfreq(wave.size, 1 / rate)
    return spectrum[(freqs >= low) & (freqs < high)].sum()


def test_band_limit_removes_everything_above_the_simulated_nyquist_and_keeps_what_is_below():
    cutoffs = set()
    for seed in range(12):
        out = band_limit(NOISE, 32000, np.random.default_rng(seed))
        above = [c for c in (4000, 5512.5, 8000, 11025) if _power(out, 32000, c, 16000) < 1e-9 * _power(NOISE, 32000, c, 16000)]
        cutoff = min(above)  # the lowest rate's Nyquist above which nothing is left
        cutoffs.add(cutoff)
        assert _power(out, 32000, 0, 0.9 * cutoff) == pytest.approx(_power(NOISE, 32000, 0, 0.9 * cutoff), rel=1e-4)
    assert len(cutoffs) >= 3  # the rates are drawn, not fixed


def test_random_eq_stays_within_its_range_and_changes_the_colour():
    out = random_eq(NOISE, 32000, np.random.default_rng(1))
    gain = np.abs(np.fft.rfft(out))[1:] / np.abs(np.fft.rfft(NOISE))[1:]
    db = 20 * np.log10(gain)
    assert db.min() >= -6.0 - 1e-3 and db.max() <= 6.0 + 1e-3 and db.max() - db.min() > 2.0


def test_room_keeps_the_direct_sound_and_adds_a_decaying_tail_cut_at_the_event_end():
    click = np.zeros(16000, np.float32)
    click[0] = 1.0
    out = room(click, 16000, np.random.default_rng(2))
    assert out.shape == click.shape and out[0] == pytest.approx(1.0, abs=1e-5)
    early, late = np.abs(out[80:1600]).max(), np.abs(out[8000:]).max()
    assert early > 1e-3 and late < early / 10  # RT60 <= 0.8 s: 0.5 s later the tail is at least 20 dB down


def test_stages_are_drawn_with_their_probability_and_unknown_names_are_refused():
    rng = np.random.default_rng(3)
    changed = sum(not np.array_equal(recording_chain(NOISE, 32000, rng, ("eq",), p=0.5), NOISE) for _ in range(200))
    assert 70 < changed < 130
    assert np.array_equal(recording_chain(NOISE, 32000, rng, ("eq", "reverb"), p=0.0), NOISE)
    with pytest.raises(ValueError, match="unknown; choose from bandlimit, eq, reverb"):
        recording_chain(NOISE, 32000, rng, ("telephone",))
    with pytest.raises(ValueError, match="unknown"):
        MixSettings(chain=("telephone",))


def test_the_mixer_passes_events_through_the_chain_reproducibly(data):  # noqa: F811
    clips, backgrounds = read_manifest(data / "clips.csv"), find_backgrounds(data / "bg")
    settings = MixSettings(duration=2.0, events=(1, 1), snr=(20, 20), background_only=0.0)
    plain = SoundscapeMixer(clips, backgrounds, RATE, settings)
    chained = SoundscapeMixer(clips, backgrounds, RATE, MixSettings(**{**settings.__dict__, "chain": ("reverb",), "chain_p": 1.0}))
    a, b = chained.mix(np.random.default_rng(5)), chained.mix(np.random.default_rng(5))
    assert np.array_equal(a.audio, b.audio) and a.events == b.events
    dry = plain.mix(np.random.default_rng(5))
    assert a.events and not np.allclose(a.audio, dry.audio)
