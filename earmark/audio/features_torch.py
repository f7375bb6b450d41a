"""Batched, differentiable torch log-mel frontend (training, GPU); the same maths as earmark.audio.features.

The FFT runs in float64: in float32 its rounding floor (about 1e-7 of the peak) shows in the log of
quiet bins next to loud tones, 1.5e-3 off after normalisation; the rest stays float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from earmark.audio.features import KALDI_EPS
from earmark.audio.melbanks import mel_banks, window
from earmark.audio.spec import FrontendSpec, get_frontend

__all__ = ["Frontend"]  # public; audio's package stays torch-free, so they are named here


class Frontend(nn.Module):
    """Waves (B, N) or (N,) at ``spec.sample_rate`` -> normalised features (B, n_mels, frames)."""

    def __init__(self, spec: FrontendSpec | str):
        super().__init__()
        self.spec = get_frontend(spec)
        win = torch.from_numpy(window(self.spec).copy())
        if self.spec.kind == "mel_stft":
            left = self.spec.window_start
            win = F.pad(win, (left, self.spec.n_fft - self.spec.win_length - left))
        self.register_buffer("window", win, persistent=False)
        self.register_buffer("banks", torch.from_numpy(mel_banks(self.spec).copy()), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.finish(self.log_mel(wave))

    def log_mel(self, wave: torch.Tensor, whole_clip: bool = True) -> torch.Tensor:
        """(B, N) or (N,) waves -> (B, n_mels, frames) log-mel before the per-window steps; ``whole_clip=False`` skips
        the clip-mean subtraction, as a stream does (``audio.streaming.FeatureStream``)."""
        spec = self.spec
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        wave = wave.float() * spec.waveform_scale
        if spec.kind == "mel_stft" and spec.preemphasis:
            wave = wave[:, 1:] - spec.preemphasis * wave[:, :-1]
        if spec.subtract_mean and whole_clip:
            wave = wave - wave.mean(dim=1, keepdim=True)
        if spec.kind == "kaldi_fbank":
            power = self._kaldi_power(wave)
        else:
            stft = torch.stft(wave.double(), spec.n_fft, spec.hop_length, spec.n_fft, self.window.double(),
                              center=spec.center, pad_mode=spec.pad_mode, return_complex=True)
            power = (stft.real.square() + stft.imag.square()).float()  # (B, freq, T)
        if spec.power != 2.0:
            power = power.pow(spec.power / 2)
        energies = torch.matmul(self.banks, power)
        if spec.log == "log_eps":
            return energies.clamp_min(KALDI_EPS).log()
        if spec.log == "log":
            return (energies + spec.log_offset).log()
        return 10.0 * energies.clamp_min(1e-10).log10()

    def finish(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Per-window steps on (B, n_mels, frames): the top_db floor against each window's peak, the dB clamp, normalisation."""
        spec = self.spec
        if spec.top_db is not None:
            peak = log_mel.amax(dim=(1, 2), keepdim=True)
            log_mel = torch.maximum(log_mel, peak - spec.top_db)
        if spec.db_min is not None or spec.db_max is not None:
            log_mel = log_mel.clamp(spec.db_min, spec.db_max)
        return (log_mel - spec.norm_mean) / spec.norm_scale

    def _kaldi_power(self, wave: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        frames = wave.unfold(1, spec.win_length, spec.hop_length)  # (B, T, win)
        if spec.remove_dc_offset:
            frames = frames - frames.mean(dim=2, keepdim=True)
        if spec.preemphasis:
            previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=2)
            frames = frames - spec.preemphasis * previous
        spectrum = torch.fft.rfft((frames * self.window).double(), n=spec.n_fft, dim=2)
        return (spectrum.real.square() + spectrum.imag.square()).float().transpose(1, 2)
