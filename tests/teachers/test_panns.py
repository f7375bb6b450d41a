"""PANNs (qiuqiangkong/audioset_tagging_cnn): narrow CNN14, Cnn14_DecisionLevelMax and Cnn14_DecisionLevelAtt files written
here key by key in the released layout ({'iteration', 'model'}, torchlibrosa's weights included) from random tensors,
converted, and checked against pytorch/models.py's computation written out with torch.nn.functional."""

import pytest
import torch
import torch.nn.functional as F

from earmark.engine import load_model
from earmark.teachers.convert import convert

torchaudio = pytest.importorskip("torchaudio")
CHANNELS = (4, 8, 8, 16, 16, 32)  # released: 64 ... 2048
CLASSES = 527


def _bn(state: dict, prefix: str, width: int) -> None:
    state[f"{prefix}.weight"], state[f"{prefix}.bias"] = 1 + 0.1 * torch.randn(width), 0.1 * torch.randn(width)
    state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"] = 0.1 * torch.randn(width), 0.5 + torch.rand(width)
    state[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)


def official_cnn14(head: str, mel_w: torch.Tensor | None = None) -> dict:
    """``model.state_dict()`` of Cnn14 / Cnn14_DecisionLevelMax (``fc_audioset``) or Cnn14_DecisionLevelAtt (``att_block``)."""
    state = {"spectrogram_extractor.stft.conv_real.weight": torch.randn(513, 1, 1024),
             "spectrogram_extractor.stft.conv_imag.weight": torch.randn(513, 1, 1024),
             "logmel_extractor.melW": torchaudio.functional.melscale_fbanks(513, 50.0, 14000.0, 64, 32000, "slaney", "slaney")
             if mel_w is None else mel_w}
    _bn(state, "bn0", 64)
    state["bn0.running_mean"], state["bn0.running_var"] = -50 + 5 * torch.randn(64), 300 + 100 * torch.rand(64)  # decibels
    for i, (cin, cout) in enumerate(zip((1, *CHANNELS[:-1]), CHANNELS), 1):
        state[f"conv_block{i}.conv1.weight"] = torch.randn(cout, cin, 3, 3) / (9 * cin) ** 0.5
        state[f"conv_block{i}.conv2.weight"] = torch.randn(cout, cout, 3, 3) / (9 * cout) ** 0.5
        _bn(state, f"conv_block{i}.bn1", cout)
        _bn(state, f"conv_block{i}.bn2", cout)
    width = CHANNELS[-1]
    state["fc1.weight"], state["fc1.bias"] = torch.randn(width, width) / width ** 0.5, 0.1 * torch.randn(width)
    if head == "att":
        for conv in ("att", "cla"):
            state[f"att_block.{conv}.weight"], state[f"att_block.{conv}.bias"] = torch.randn(CLASSES, width, 1) / width ** 0.5, torch.randn(CLASSES)
        _bn(state, "att_block.bn_att", CLASSES)
    else:
        state["fc_audioset.weight"], state["fc_audioset.bias"] = torch.randn(CLASSES, width) / width ** 0.5, torch.randn(CLASSES)
    return state


def reference(state: dict, head: str, logmel: torch.Tensor) -> dict:
    """The models' forward in eval after their logmel_extractor: logmel (B, 1, frames, 64) -> their output dict."""
    bn = lambda x, p: F.batch_norm(x, state[f"{p}.running_mean"], state[f"{p}.running_var"], state[f"{p}.weight"], state[f"{p}.bias"], False)
    x = bn(logmel.transpose(1, 3), "bn0").transpose(1, 3)
    for i in range(1, 7):
        x = F.relu(bn(F.conv2d(x, state[f"conv_block{i}.conv1.weight"], padding=1), f"conv_block{i}.bn1"))
        x = F.relu(bn(F.conv2d(x, state[f"conv_block{i}.conv2.weight"], padding=1), f"conv_block{i}.bn2"))
        x = F.avg_pool2d(x, (2, 2) if i < 6 else (1, 1))
    x = torch.mean(x, dim=3)
    if head == "clip":
        x = F.relu(F.linear(torch.max(x, dim=2)[0] + torch.mean(x, dim=2), state["fc1.weight"], state["fc1.bias"]))
        return {"clipwise_output": torch.sigmoid(F.linear(x, state["fc_audioset.weight"], state["fc_audioset.bias"])), "embedding": x}
    x = F.max_pool1d(x, 3, 1, 1) + F.avg_pool1d(x, 3, 1, 1)
    x = F.relu(F.linear(x.transpose(1, 2), state["fc1.weight"], state["fc1.bias"]))
    if head == "max":
        segments = torch.sigmoid(F.linear(x, state["fc_audioset.weight"], state["fc_audioset.bias"]))
        clip = torch.max(segments, dim=1)[0]
    else:
        x = x.transpose(1, 2)
        attention = torch.softmax(torch.clamp(F.conv1d(x, state["att_block.att.weight"], state["att_block.att.bias"]), -10, 10), dim=-1)
        cla = torch.sigmoid(F.conv1d(x, state["att_block.cla.weight"], state["att_block.cla.bias"]))
        clip, segments = torch.sum(attention * cla, dim=2), cla.transpose(1, 2)
    framewise = segments[:, :, None, :].repeat(1, 1, 32, 1).reshape(segments.shape[0], -1, CLASSES)  # interpolate(x, 32)
    framewise = torch.cat([framewise, framewise[:, -1:].repeat(1, logmel.shape[2] - framewise.shape[1], 1)], dim=1)  # pad_framewise_output
    return {"clipwise_output": clip, "framewise_output": framewise}


@pytest.mark.parametrize("fmt, head, name", [("panns", "clip", "cnn14"), ("panns-sed", "max", "cnn14_decision_max"),
                                             ("panns-sed", "att", "cnn14_decision_att")])
def test_cnn14_files_convert_to_the_reference_computation(tmp_path, fmt, head, name):
    torch.manual_seed(0)
    state = official_cnn14(head)
    torch.save({"iteration": 100000, "model": state}, tmp_path / "Cnn14.pth")
    path, mapped = convert(fmt, tmp_path / "Cnn14.pth", tmp_path / "out")
    model, meta = load_model(path, "teacher")
    assert mapped.name == name and "logmel_extractor.melW" in mapped.dropped and "iteration" in mapped.dropped
    assert ("att_block.bn_att.weight" in mapped.dropped) == (head == "att")
    assert meta.frontend["name"] == "panns" and meta.frontend["mel_scale"] == "slaney" and meta.objective == "detect"
    assert meta.task == ("clip" if head == "clip" else "frame") and meta.labels[0] == "Speech" and len(meta.labels) == CLASSES
    for frames in (1001, 201):  # 10 s at 32 kHz (centred, hop 320), and a 2-s clip
        features = -50 + 20 * torch.randn(2, 1, 64, frames)
        with torch.no_grad():
            out = model(features)
            theirs = reference(state, head, features.transpose(2, 3))
        assert (torch.sigmoid(out.clip_logits) - theirs["clipwise_output"]).abs().max() < 1e-4
        if head == "clip":
            assert (out.embedding - theirs["embedding"]).abs().max() < 1e-4
        else:
            ours = torch.sigmoid(out.frame_logits).repeat_interleave(32, dim=1)
            assert out.frame_hop_seconds == pytest.approx(0.32) and out.frame_logits.shape[1] == frames // 32
            assert (ours - theirs["framewise_output"][:, :ours.shape[1]]).abs().max() < 1e-4


def test_the_format_decides_between_cnn14_and_its_decision_level_twin_and_other_filterbanks_are_refused(tmp_path):
    torch.save({"model": official_cnn14("att")}, tmp_path / "att.pth")
    with pytest.raises(ValueError, match=r"is not a panns checkpoint; its keys are those of the panns-sed format"):
        convert("panns", tmp_path / "att.pth", tmp_path / "out")
    torch.save({"model": official_cnn14("clip", mel_w=torch.rand(257, 64))}, tmp_path / "Cnn14_16k.pth")
    with pytest.raises(ValueError, match=r"Cnn14_16k.pth: its mel filterbank \(logmel_extractor.melW, \(257, 64\)\) is not the 32-kHz"):
        convert("panns", tmp_path / "Cnn14_16k.pth", tmp_path / "out")
