"""Streaming equals offline; load_audio decodes, resamples, downmixes and refuses bad files clearly."""

import numpy as np
import pytest
import soundfile as sf

from earmark.audio import PRESETS, FeatureStream, frame_features, load_audio

from .signals import make_signal


@pytest.mark.parametrize("name", ["beats", "ast", "atst", "tfsepnet"])
def test_streaming_in_random_blocks_equals_offline(name):
    spec = PRESETS[name]
    rng = np.random.default_rng(7)
    for seconds in (0.3, 1.7):
        wave = make_signal("speech", seconds, spec.sample_rate)
        stream, parts, i = FeatureStream(spec), [], 0
        while i < wave.size:
            block = int(rng.integers(1, 2500))
            parts.append(stream.push(wave[i:i + block]))
            i += block
        parts.append(stream.flush())
        streamed = np.concatenate(parts, axis=1)
        offline = frame_features(spec, wave)
        assert streamed.shape == offline.shape
        assert np.abs(streamed - offline).max() < 1e-3
        assert stream.frames_out == spec.num_frames(wave.size)


@pytest.mark.parametrize("name", ["beats", "atst", "cpjku"])
def test_samples_needed_is_exactly_what_completes_the_frames(name):
    spec = PRESETS[name]
    wave = make_signal("noise", 2.0, spec.sample_rate)
    stream, pushed, out = FeatureStream(spec), 0, 0
    for frames in (5, 6, 40):
        needed = stream.samples_needed(frames)
        assert needed > 0
        out += stream.push(wave[pushed:pushed + needed - 1]).shape[1]
        assert out == frames - 1  # one sample short
        out += stream.push(wave[pushed + needed - 1:pushed + needed]).shape[1]
        assert out == frames and stream.samples_needed(frames) == 0
        pushed += needed


@pytest.mark.parametrize("name", ["cpjku", "efficientat"])
def test_a_centred_frame_comes_out_half_a_window_past_its_centre_as_offline_computes_it(name):
    spec = PRESETS[name]  # windows shorter than their FFT: the frame's span reaches further than its window
    wave = make_signal("speech", 2.0, spec.sample_rate)
    frames = 40
    reach = spec.frame_end(frames - 1) - (frames - 1) * spec.hop_length
    assert reach == spec.win_length // 2 < spec.n_fft // 2
    stream = FeatureStream(spec)
    early = stream.push(wave[:stream.samples_needed(frames)])
    assert early.shape[1] == frames
    assert np.abs(early - frame_features(spec, wave)[:, :frames]).max() < 1e-3


def test_load_audio_resamples_and_downmixes(tmp_path):
    t = np.arange(48000) / 48000
    stereo = np.stack([np.sin(2 * np.pi * 1000 * t), np.zeros_like(t)], axis=1).astype(np.float32) * 0.5
    path = tmp_path / "a.wav"
    sf.write(path, stereo, 48000)
    mono = load_audio(path, 16000)
    assert mono.shape == (16000,) and mono.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(mono))
    assert abs(np.argmax(spectrum) - 1000) <= 1  # 1 Hz bins: the tone survives resampling
    assert abs(np.abs(mono[1000:-1000]).max() - 0.25) < 0.01  # mean of the two channels
    assert load_audio(path, 48000, mono=False).shape == (2, 48000)


def test_bad_files_get_one_clear_error_naming_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav", 16000)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio")
    with pytest.raises(ValueError, match="junk.wav.*cannot be decoded"):
        load_audio(junk, 16000)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(ValueError, match="empty.wav.*no samples"):
        load_audio(empty, 16000)
    zero_bytes = tmp_path / "zero.flac"
    zero_bytes.write_bytes(b"")
    with pytest.raises(ValueError, match="zero.flac"):
        load_audio(zero_bytes, 16000)


def test_audio_core_imports_without_torch():
    import subprocess
    import sys

    code = "import sys; sys.modules['torch'] = None; import earmark.audio, earmark.audio.streaming"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
