"""Deterministic test detectors exported to real ONNX files with earmark metadata: tones at 1 kHz and 3 kHz.

Each label's score is a sigmoid of how far its mel band rises above the frame's mean energy, so a
played tone gives a known event at a known time. Built with torch (the tests may use it); the runtime
under test loads them with ONNX Runtime only.
"""

from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from earmark.audio.melbanks import kaldi_mel
from earmark.audio.metadata import ModelMetadata
from earmark.audio.spec import PRESETS
from earmark.export.onnx_export import attach_metadata

SPEC = PRESETS["beats"].replace(name="test16k", n_mels=64)
LABELS = ("tone_1k", "tone_3k")
FREQS = (1000.0, 3000.0)
SCENE_LABELS = ("quiet", "tonal")
SAMPLE_RATE = SPEC.sample_rate


def band_masks() -> torch.Tensor:
    mel_lo, mel_hi = kaldi_mel(SPEC.f_min), kaldi_mel(SPEC.mel_high)
    centres_mel = mel_lo + (mel_hi - mel_lo) * (np.arange(SPEC.n_mels) + 1) / (SPEC.n_mels + 1)
    centres = 700 * (np.exp(centres_mel / 1127) - 1)
    return torch.tensor(np.stack([(np.abs(centres - f) < 0.12 * f) for f in FREQS]), dtype=torch.float32)


class ToneDetector(nn.Module):
    """(B, 1, n_mels, T) features -> clip (B, C) or (frame (B, T, C), clip (B, C)) probabilities; with ``scenes``
    also a scene head's (B, 2) probabilities of ("quiet", "tonal"): tonal is the loudest tone's clip score."""

    def __init__(self, frame: bool, gain: float = 20.0, bias: float = 0.3, scenes: bool = False):
        super().__init__()
        self.frame, self.gain, self.bias, self.scenes = frame, gain, bias, scenes
        self.register_buffer("masks", band_masks() / band_masks().sum(1, keepdim=True))

    def rise(self, x):
        """(B, T, C): how far each label's band rises above the frame's mean."""
        x = x[:, 0]  # (B, F, T)
        return torch.einsum("cf,bft->btc", self.masks, x) - x.mean(dim=1).unsqueeze(-1)

    def forward(self, x):
        frames = torch.sigmoid(self.gain * (self.rise(x) - self.bias))
        clip = frames.amax(dim=1)
        outputs = (frames, clip) if self.frame else (clip,)
        if self.scenes:
            tonal = clip.amax(dim=1, keepdim=True)
            outputs += (torch.cat([1 - tonal, tonal], dim=1),)
        return outputs if len(outputs) > 1 else clip


def export_detector(path: Path, frame: bool = False, window: float = 1.0, hop: float = 0.25, thresholds=None,
                    labels: tuple[str, str] = LABELS, scenes: bool = False, spec=SPEC) -> Path:
    """A tone detector in ONNX; ``scenes`` adds a scene head over SCENE_LABELS (output ``scene_probs``); ``spec``: its
    features (SPEC's 64 mel bands at 16 kHz, with another hop for instance)."""
    frames = spec.num_frames(int(window * SAMPLE_RATE))
    x = torch.zeros(1, 1, spec.n_mels, frames)
    names = (["frame_probs", "clip_probs"] if frame else ["clip_probs"]) + (["scene_probs"] if scenes else [])
    torch.onnx.export(ToneDetector(frame, scenes=scenes).eval(), (x,), str(path), dynamo=False, opset_version=17,
                      input_names=["features"], output_names=names)
    roles = {"frame": names[0], "clip": names[1]} if frame else {"clip": names[0]}
    meta = ModelMetadata(labels=labels, task="frame" if frame else "clip", objective="detect", frontend=spec, window_seconds=window,
                         hop_seconds=hop, input_frames=frames,
                         outputs={**roles, **({"scene": "scene_probs"} if scenes else {})},
                         scene_labels=SCENE_LABELS if scenes else (),
                         thresholds=thresholds or {}, frame_hop_seconds=spec.hop_seconds if frame else 0.0,
                         model_name="tone-detector")
    model = onnx.load(str(path))
    attach_metadata(model, meta)
    onnx.save(model, str(path))
    return path


class CausalToneDetector(ToneDetector):
    """The tone detector as a causal streaming model: each 4-frame hop's mean rise, averaged with the state (the previous
    hop's), so ``stream`` hop by hop equals one call on the whole signal."""

    causal, step_frames = True, 4

    def __init__(self):
        super().__init__(frame=True)

    def initial_state(self, batch=1):
        return [torch.zeros(batch, len(LABELS))]

    def stream(self, x, previous):
        rise = nn.functional.avg_pool1d(self.rise(x).transpose(1, 2), self.step_frames).transpose(1, 2)  # (B, hops, C): each hop's mean
        # s_t = (s_{t-1} + r_t) / 2 unrolled without a loop, so the traced graph takes any number of hops:
        # s_t = 0.5^(t+1) s_-1 + sum_{k<=t} 0.5^(t-k+1) r_k
        t = torch.ones_like(rise[0, :, 0]).cumsum(0) - 1  # 0, 1, ..., hops - 1, from a tensor: the trace keeps it dynamic
        lag = t[:, None] - t[None, :]
        decay = torch.where(lag >= 0, torch.pow(0.5, lag + 1), torch.zeros_like(lag))
        smoothed = torch.einsum("tk,bkc->btc", decay, rise) + torch.pow(0.5, t + 1)[None, :, None] * previous[:, None, :]
        return self.gain * (smoothed - self.bias), [smoothed[:, -1]]


def export_causal_detector(path: Path) -> Path:
    """The causal tone detector as a stateful ONNX file (40-ms hops of 4 frames), through earmark's stateful tracer."""
    from earmark.export.stateful import stateful_metadata, trace_stateful

    model = CausalToneDetector().eval()
    meta = stateful_metadata(ModelMetadata(labels=LABELS, task="frame", objective="detect", frontend=SPEC, window_seconds=1.0,
                                              hop_seconds=0.5, outputs={"frame": "frame_probs", "clip": "clip_probs"},
                                              frame_hop_seconds=4 * SPEC.hop_seconds, model_name="causal-tone-detector"), model)
    graph = trace_stateful(model, meta, path)
    attach_metadata(graph, meta)
    onnx.save(graph, str(path))
    return path


def tone_track(seconds: float, tones: list[tuple[float, float, float]], rate: int = SAMPLE_RATE, noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """Noise with tones (onset, offset, frequency) at 0.3 amplitude."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = noise * rng.standard_normal(t.size)
    for onset, offset, freq in tones:
        on = (t >= onset) & (t < offset)
        x[on] += 0.3 * np.sin(2 * np.pi * freq * t[on])
    return x.astype(np.float32)
