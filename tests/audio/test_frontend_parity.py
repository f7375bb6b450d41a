"""numpy vs torch vs torchaudio: the presets reproduce the reference pipelines within 1e-3."""

import numpy as np
import pytest
import torch

from earmark.audio import PRESETS, compute_features
from earmark.audio.features_torch import Frontend

from .signals import KINDS, make_signal

torchaudio = pytest.importorskip("torchaudio")
TOL = 1e-3
TOL_DB = 0.05  # PANNs' features are plain decibels (its model's bn0 normalises): a float32 FFT's round-off shows 110 dB under the peak


def reference(name: str, wave: np.ndarray) -> np.ndarray:
    """The reference implementations' own pipelines, written with torchaudio as they are.

    They run in float64: torchaudio's float32 FFT is itself 1.4e-3 off its float64 result on pure tones.
    """
    x = torch.from_numpy(wave.astype(np.float64))[None]
    if name == "beats":
        fb = torchaudio.compliance.kaldi.fbank(x * 2**15, num_mel_bins=128, sample_frequency=16000, frame_length=25, frame_shift=10)
        return ((fb - 15.41663) / (2 * 6.55582)).T.numpy()
    if name == "ast":
        fb = torchaudio.compliance.kaldi.fbank(x - x.mean(), htk_compat=True, sample_frequency=16000, use_energy=False,
                                               window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)
        return ((fb + 4.2677393) / (2 * 4.5689974)).T.numpy()
    if name in ("atst", "atst_sed"):
        mel = torchaudio.transforms.MelSpectrogram(16000, f_min=60, f_max=7800, hop_length=160, win_length=1024, n_fft=1024, n_mels=64).double()
        db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=80)(mel(x))
        if name == "atst_sed":  # PretrainedSED's ATSTMel.amp2db, ATST-SED's normalisation
            db = db.clamp(min=-50, max=80)
        return ((db - (-79.6482)) / (50.6842 - (-79.6482)) * 2 - 1)[0].numpy()
    if name == "panns":  # torchlibrosa: periodic Hann STFT, librosa's Slaney mel banks (torchaudio's equal), power_to_db
        stft = torch.stft(x, 1024, hop_length=320, window=torch.hann_window(1024, dtype=torch.float64), center=True, return_complex=True)
        banks = torchaudio.functional.melscale_fbanks(513, 50.0, 14000.0, 64, 32000, norm="slaney", mel_scale="slaney").double()
        return (10 * (stft.abs().square().transpose(1, 2) @ banks).clamp_min(1e-10).log10())[0].T.numpy()
    # CP-JKU's AugmentMelSTFT in eval: TF-SepNet (easy_dcase_task1) and EfficientAT (fmax None -> 15 kHz)
    n_mels, n_fft, win, hop, fmax = {"tfsepnet": (512, 4096, 3072, 500, 16000.0), "cpjku": (256, 4096, 3072, 500, 16000.0),
                                     "efficientat": (128, 1024, 800, 320, 15000.0)}[name]
    y = torch.nn.functional.conv1d(x.unsqueeze(1), torch.tensor([[[-0.97, 1.0]]], dtype=torch.float64)).squeeze(1)
    stft = torch.stft(y, n_fft, hop_length=hop, win_length=win, center=True, window=torch.hann_window(win, periodic=False, dtype=torch.float64), return_complex=True)
    banks, _ = torchaudio.compliance.kaldi.get_mel_banks(n_mels, n_fft, 32000, 0.0, fmax, 100.0, -500.0, 1.0)
    banks = torch.nn.functional.pad(banks, (0, 1)).double()
    return (((banks @ stft.abs().square() + 1e-5).log() + 4.5) / 5)[0].numpy()


@pytest.mark.parametrize("name", ["beats", "ast", "atst", "atst_sed", "tfsepnet", "cpjku", "efficientat", "panns"])
@pytest.mark.parametrize("kind", KINDS)
def test_numpy_torch_and_reference_agree(name, kind):
    spec = PRESETS[name]
    wave = make_signal(kind, 1.5, spec.sample_rate)
    ref = reference(name, wave)
    ours = compute_features(spec, wave)
    batched = Frontend(spec)(torch.from_numpy(np.stack([wave, wave])))[1].numpy()
    tol = TOL_DB if spec.log == "db" and spec.norm_scale == 1.0 else TOL
    assert ours.shape == ref.shape == batched.shape
    assert np.abs(ours - ref).max() < tol
    assert np.abs(batched - ref).max() < tol


@pytest.mark.parametrize("scale", [1.0, 0.0005])
def test_the_atst_sed_clamp_matters_on_quiet_audio_and_matches_its_reference(scale):
    """At x0.0005 most bins sit under -50 dB: the plain atst preset and atst_sed part there, each equal to its reference."""
    wave = make_signal("tones", 2.0, 16000) * np.float32(scale)
    clamped, plain = compute_features(PRESETS["atst_sed"], wave), compute_features(PRESETS["atst"], wave)
    assert np.abs(clamped - reference("atst_sed", wave)).max() < TOL and np.abs(plain - reference("atst", wave)).max() < TOL
    assert (np.abs(clamped - plain).max() > 0.1) == (scale < 1)


@pytest.mark.parametrize("name", ["beats", "ast", "atst", "tfsepnet", "efficientat", "panns"])
def test_frame_counts_match_reference_for_many_lengths(name):
    spec = PRESETS[name]
    for seconds in (0.5, 0.77, 1.0, 2.31, 4.0, 10.0):
        wave = make_signal("noise", seconds, spec.sample_rate, seed=3)
        frames = compute_features(spec, wave).shape[1]
        assert frames == reference(name, wave).shape[1] == spec.num_frames(wave.size)


def test_one_second_gives_the_documented_shapes():
    assert compute_features(PRESETS["tfsepnet"], np.zeros(32000, np.float32)).shape == (512, 64)
    assert PRESETS["beats"].num_frames(160000) == 998
    assert PRESETS["atst"].num_frames(160000) == 1001


def test_torch_frontend_is_differentiable():
    wave = torch.from_numpy(make_signal("tones", 0.5, 32000)).requires_grad_()
    Frontend("tfsepnet")(wave).sum().backward()
    assert wave.grad is not None and torch.isfinite(wave.grad).all()


@pytest.mark.parametrize("name", ["beats", "atst", "tfsepnet", "cpjku", "panns"])
def test_banded_mel_product_of_the_shifted_window_equals_the_dense_filterbank_of_the_centred_one(name):
    from earmark.audio.features import Scratch, mel_energies, power_spectrum, taper
    from earmark.audio.melbanks import mel_banks, window

    spec = PRESETS[name]
    frame_len = spec.n_fft if spec.center else spec.win_length
    frames = np.stack([make_signal(kind, 1.0, spec.sample_rate)[:frame_len] for kind in KINDS])
    scratch = Scratch(spec)
    windowed = taper(spec, frames, scratch)
    power = power_spectrum(spec, windowed)  # (frames, bins)
    assert not windowed[:, spec.win_length:].any()
    start = (spec.n_fft - spec.win_length) // 2 if spec.kind == "mel_stft" else 0
    centred = np.roll(windowed, start, axis=1)  # where torch.stft puts a window shorter than n_fft
    exact = np.abs(np.fft.rfft(centred, axis=1)) ** 2
    assert power.shape == exact.shape == (len(KINDS), spec.n_fft // 2 + 1)
    assert np.abs(power - exact).max() <= 1e-6 * exact.max()  # a circular shift leaves |X|^2 alone
    dense = mel_banks(spec) @ power.T
    banded = mel_energies(spec, power, scratch)
    assert banded.shape == dense.shape == (spec.n_mels, len(KINDS))
    assert np.abs(np.log(banded + 1e-5) - np.log(dense + 1e-5)).max() <= 1e-5


@pytest.mark.parametrize("name", ["tfsepnet", "cpjku", "atst"])
@pytest.mark.parametrize("kind", KINDS)
def test_runtime_frontend_matches_the_model_frontend(name, kind):
    """The students trained on the torch frontend; the runtime's numpy frontend must give them the same features."""
    spec = PRESETS[name]
    wave = make_signal(kind, 1.5, spec.sample_rate)
    model_side = Frontend(spec)(torch.from_numpy(wave[None]))[0].numpy()
    assert np.abs(compute_features(spec, wave) - model_side).max() <= 3e-4
