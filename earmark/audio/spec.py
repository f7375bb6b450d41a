"""FrontendSpec: the frozen, JSON-serialisable description of a model's input features (DESIGN artifact 1)."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any, Literal

FrontendKind = Literal["kaldi_fbank", "mel_stft"]


@dataclass(frozen=True)
class FrontendSpec:
    """Every number that decides what a model sees; features are laid out as (n_mels, frames).

    Two kinds exist. ``kaldi_fbank`` follows ``torchaudio.compliance.kaldi.fbank`` with
    ``snip_edges=True``: frames of ``win_length`` samples every ``hop_length`` samples,
    per-frame DC removal and pre-emphasis, an FFT of the next power of two, Kaldi mel banks,
    ``log(max(x, eps))``. ``mel_stft`` follows ``torch.stft``/``torchaudio.transforms.MelSpectrogram``:
    optional signal-level pre-emphasis (kernel ``[-preemphasis, 1]``, one sample shorter), a centred STFT,
    power spectrum, mel banks of ``mel_scale``, then ``log(x + log_offset)`` or decibels with ``top_db``, then
    decibels clamped to [``db_min``, ``db_max``] where given. Both end with ``(x - norm_mean) / norm_scale``.
    """

    name: str
    kind: FrontendKind
    sample_rate: int
    n_mels: int
    win_length: int
    hop_length: int
    n_fft: int
    window: Literal["povey", "hann"] = "hann"
    periodic_window: bool = True
    center: bool = False
    pad_mode: Literal["reflect", "constant"] = "reflect"
    f_min: float = 0.0
    f_max: float = 0.0  # 0 or negative: offset from Nyquist, as Kaldi's high_freq
    mel_scale: Literal["kaldi", "htk", "slaney"] = "kaldi"  # slaney: librosa.filters.mel (unit-area triangles)
    waveform_scale: float = 1.0
    subtract_mean: bool = False
    remove_dc_offset: bool = False
    preemphasis: float = 0.0
    power: float = 2.0
    log: Literal["log", "log_eps", "db"] = "log"
    log_offset: float = 1e-5
    top_db: float | None = None
    db_min: float | None = None  # decibels clamped after top_db (ATST-SED / PretrainedSED: [-50, 80])
    db_max: float | None = None
    norm_mean: float = 0.0
    norm_scale: float = 1.0

    @property
    def nyquist(self) -> float:
        return self.sample_rate / 2

    @property
    def mel_high(self) -> float:
        """Upper edge of the mel banks in Hz (Kaldi convention: <= 0 counts back from Nyquist)."""
        return self.f_max if self.f_max > 0 else self.nyquist + self.f_max

    @property
    def hop_seconds(self) -> float:
        return self.hop_length / self.sample_rate

    def signal_length(self, num_samples: int) -> int:
        """Samples that reach the framing step (signal-level pre-emphasis drops one)."""
        if self.kind == "mel_stft" and self.preemphasis:
            return max(num_samples - 1, 0)
        return num_samples

    @property
    def window_start(self) -> int:
        """Where a window shorter than n_fft sits in its n_fft-sample frame: in the middle (torch.stft's place)."""
        return (self.n_fft - self.win_length) // 2

    def frame_end(self, frame: int) -> int:
        """One past the last signal sample that frame ``frame``'s window reads. A centred frame spans n_fft samples
        around its centre, but a window shorter than n_fft sits in the middle of that span (torch.stft's place) and reads
        only ``win_length`` of them: the frame is known half a window, not half an FFT, past its centre."""
        if not self.center:
            return frame * self.hop_length + self.win_length
        return frame * self.hop_length - self.n_fft // 2 + self.window_start + self.win_length

    def num_frames(self, num_samples: int) -> int:
        """Feature frames produced for ``num_samples`` samples of audio at ``sample_rate``."""
        n = self.signal_length(num_samples)
        if self.center:
            return n // self.hop_length + 1 if n > 0 else 0
        return 0 if n < self.win_length else 1 + (n - self.win_length) // self.hop_length

    def replace(self, **changes: Any) -> "FrontendSpec":
        """A copy with some fields changed (the name is kept unless given)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FrontendSpec":
        fields = dataclasses.fields(cls)
        unknown = sorted(set(data) - {f.name for f in fields})
        if unknown:
            raise ValueError(f"FrontendSpec has no field(s) {unknown}; the file was written by a newer earmark, upgrade it.")
        missing = sorted(f.name for f in fields if f.default is dataclasses.MISSING and f.name not in data)
        if missing:
            raise ValueError(f"the frontend lacks field(s) {missing}; it must describe the features completely.")
        for name, hint in typing.get_type_hints(cls).items():
            if typing.get_origin(hint) is Literal and name in data and data[name] not in typing.get_args(hint):
                raise ValueError(f"the frontend's {name} {data[name]!r} is not one of {list(typing.get_args(hint))}.")
        return cls(**data)


def _kaldi(name: str, **fields: Any) -> FrontendSpec:
    """Kaldi fbank at 16 kHz, 25 ms / 10 ms, 128 mel, torchaudio's defaults for every option not given."""
    base = dict(
        kind="kaldi_fbank", sample_rate=16000, n_mels=128, win_length=400, hop_length=160, n_fft=512,
        window="povey", periodic_window=False, center=False, f_min=20.0, f_max=0.0, mel_scale="kaldi",
        remove_dc_offset=True, preemphasis=0.97, log="log_eps",
    )
    base.update(fields)
    return FrontendSpec(name=name, **base)


def _cpmel(name: str, n_mels: int, **fields: Any) -> FrontendSpec:
    """CP-JKU's mel STFT (AugmentMelSTFT in eval): 32 kHz, pre-emphasis, a symmetric Hann, Kaldi mel banks, log(x + 1e-5),
    (x + 4.5) / 5; TF-SepNet's numbers (4096-point FFT of a 3072 window, hop 500) unless ``fields`` say otherwise."""
    base = dict(
        kind="mel_stft", sample_rate=32000, n_mels=n_mels, win_length=3072, hop_length=500,
        n_fft=4096, window="hann", periodic_window=False, center=True, pad_mode="reflect", f_min=0.0,
        f_max=16000.0, mel_scale="kaldi", preemphasis=0.97, log="log", log_offset=1e-5,
        norm_mean=-4.5, norm_scale=5.0,
    )
    base.update(fields)
    return FrontendSpec(name=name, **base)


# Reference pipelines, reproduced exactly (see shared notes and docs/frontends.md).
PRESETS: dict[str, FrontendSpec] = {
    # BEATs: kaldi fbank on waveform * 2**15, (x - 15.41663) / (2 * 6.55582).
    "beats": _kaldi("beats", waveform_scale=2.0**15, norm_mean=15.41663, norm_scale=2 * 6.55582),
    # AST / SSAST / ASiT: mean-removed waveform, hanning window, htk_compat (no effect without energy).
    "ast": _kaldi("ast", window="hann", subtract_mean=True, norm_mean=-4.2677393, norm_scale=2 * 4.5689974),
    # ATST-Clip/Frame: torchaudio MelSpectrogram + AmplitudeToDB(top_db=80) + MinMax(-79.6482, 50.6842) to [-1, 1].
    "atst": FrontendSpec(
        name="atst", kind="mel_stft", sample_rate=16000, n_mels=64, win_length=1024, hop_length=160,
        n_fft=1024, window="hann", periodic_window=True, center=True, pad_mode="reflect", f_min=60.0,
        f_max=7800.0, mel_scale="htk", log="db", top_db=80.0,
        norm_mean=(-79.6482 + 50.6842) / 2, norm_scale=(50.6842 + 79.6482) / 2,
    ),
    "tfsepnet": _cpmel("tfsepnet", 512),
    "cpjku": _cpmel("cpjku", 256),
    # EfficientAT (models/preprocess.py AugmentMelSTFT, inference.py): 25 ms window in a 1024-point FFT, 10 ms hop, 128 mel;
    # fmax=None becomes sr // 2 - fmax_aug_range // 2 = 15 kHz, which eval keeps.
    "efficientat": _cpmel("efficientat", 128, win_length=800, hop_length=320, n_fft=1024, f_max=15000.0),
    # PANNs (torchlibrosa Spectrogram + LogmelFilterBank, inference.py's defaults): periodic Hann of 1024 = n_fft, hop 320,
    # librosa's Slaney mel banks (64, 50-14000 Hz), power_to_db with ref 1, amin 1e-10 and no top_db; its bn0 is the model's.
    "panns": FrontendSpec(
        name="panns", kind="mel_stft", sample_rate=32000, n_mels=64, win_length=1024, hop_length=320, n_fft=1024,
        window="hann", periodic_window=True, center=True, pad_mode="reflect", f_min=50.0, f_max=14000.0,
        mel_scale="slaney", log="db",
    ),
}
# ATST-SED and PretrainedSED (ATSTMel) clamp ATST's decibels to [-50, 80] before the min-max scaling.
PRESETS["atst_sed"] = PRESETS["atst"].replace(name="atst_sed", db_min=-50.0, db_max=80.0)
# ASiT's released pretraining code hard-codes 32 kHz (its paper says 16 kHz); both are offered.
PRESETS["asit32k"] = PRESETS["ast"].replace(name="asit32k", sample_rate=32000, win_length=800, hop_length=320, n_fft=1024)


def get_frontend(name_or_spec: str | FrontendSpec | dict[str, Any]) -> FrontendSpec:
    """A preset by name, a spec as it is, or a spec from its dict."""
    if isinstance(name_or_spec, FrontendSpec):
        return name_or_spec
    if isinstance(name_or_spec, dict):
        return FrontendSpec.from_dict(name_or_spec)
    try:
        return PRESETS[name_or_spec]
    except KeyError:
        raise ValueError(f"Unknown frontend {name_or_spec!r}; choose one of {sorted(PRESETS)}.") from None
