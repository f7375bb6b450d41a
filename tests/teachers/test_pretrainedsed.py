"""PretrainedSED's checkpoints (fschmid56/PretrainedSED), written here key by key in its PredictionsWrapper layout from
random tensors: ATST-F (model.atst.*), BEATs (the release's model.model.*), ASiT (the release's model.*), converted
and checked against the wrapper's computation written out by hand; then a frame student distils from one online."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from earmark.engine import load_model
from earmark.teachers import create_teacher
from earmark.teachers.convert import convert

TINY = dict(dim=192, heads=3, depth=12)  # released tiny width at the released depth
STRONG = 447


def _heads(dim: int, classes: int = STRONG, weak: int | None = None) -> dict:
    return {"strong_head.weight": 0.1 * torch.randn(classes, dim), "strong_head.bias": torch.randn(classes),
            "weak_head.weight": 0.1 * torch.randn(weak or classes, dim), "weak_head.bias": torch.randn(weak or classes)}


def _wrapper_logits(sequence: torch.Tensor, heads: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """PredictionsWrapper.forward with a linear head: the sequence to 250 steps, strong per step, weak on the mean."""
    x = sequence.transpose(1, 2)
    x = F.adaptive_avg_pool1d(x, 250) if x.shape[-1] > 250 else F.interpolate(x, size=250, mode="linear")
    x = x.transpose(1, 2)
    return x @ heads["strong_head.weight"].T + heads["strong_head.bias"], x.mean(1) @ heads["weak_head.weight"].T + heads["weak_head.bias"]


def _check(path, original, heads, features, sequence) -> None:
    converted, meta = load_model(path, "teacher")
    with torch.no_grad():
        out = converted(features)
        strong, weak = _wrapper_logits(sequence(original.eval()(features)), heads)
    assert torch.allclose(out.frame_logits, strong, atol=1e-4) and torch.allclose(out.clip_logits, weak, atol=1e-4)
    assert out.frame_hop_seconds == pytest.approx(features.shape[-1] * converted.frontend.hop_seconds / 250)
    assert meta.task == "frame" and meta.objective == "detect"


def test_atst_f_strong_file_converts_with_the_clamped_frontend_and_its_447_labels(tmp_path):
    torch.manual_seed(0)
    model = create_teacher("atst_frame_base", **TINY)
    state = {f"model.atst.{'norm_frame' + k[4:] if k.startswith('norm.') else k}": v for k, v in model.state_dict().items()}
    state["model.atst.mask_embed"] = torch.zeros(1, 1, 192)
    state["model.atst_mel.mel_transform.mel_scale.fb"] = torch.rand(513, 64)  # ATSTMel's buffers, when saved
    heads = _heads(192)
    torch.save({**state, **heads}, tmp_path / "ATST-F_strong_1.pt")
    path, mapped = convert("pretrainedsed-atst", tmp_path / "ATST-F_strong_1.pt", tmp_path / "out")
    assert "model.atst_mel.mel_transform.mel_scale.fb" in mapped.dropped and "model.atst.mask_embed" in mapped.dropped
    _, meta = load_model(path, "teacher")
    assert meta.frontend["name"] == "atst_sed" and meta.frontend["db_min"] == -50.0 and meta.frontend["db_max"] == 80.0
    assert len(meta.labels) == STRONG and meta.labels[:2] == ["Accelerating, revving, vroom", "Air brake"]
    for frames in (1001, 501):  # 10 s: 250 tokens, one per step; 5 s: 125 tokens stretched to 250
        _check(path, model, heads, torch.randn(1, 1, 64, frames), lambda out: out.tokens)


def test_beats_release_file_pools_all_tokens_to_250_steps(tmp_path):
    torch.manual_seed(1)
    model = create_teacher("beats_tiny")
    state = {f"model.model.{k}": v for k, v in model.state_dict().items()}
    w = state.pop("model.model.encoder.pos_conv.0.weight")
    state["model.model.encoder.pos_conv.0.weight_g"], state["model.model.encoder.pos_conv.0.weight_v"] = w.norm(dim=(0, 1), keepdim=True), w
    state["model.model.encoder.layers.1.self_attn.relative_attention_bias.weight"] = state[
        "model.model.encoder.layers.0.self_attn.relative_attention_bias.weight"]
    heads = _heads(64, classes=3)
    torch.save({**state, **heads}, tmp_path / "BEATs_strong_1.pt")
    path, mapped = convert("pretrainedsed-beats", tmp_path / "BEATs_strong_1.pt", tmp_path / "out")
    assert mapped.labels == ["class_0", "class_1", "class_2"] and mapped.name == "beats_base"
    assert load_model(path, "teacher")[1].frontend["name"] == "beats"
    for frames in (998, 300):  # 496 tokens pooled to 250 steps (frequency patches mix); 144 stretched
        _check(path, model, heads, torch.randn(1, 1, 128, frames), lambda out: out.tokens)


def test_asit_release_file_reads_its_positions_as_pretrainedsed_does(tmp_path):
    torch.manual_seed(2)
    model = create_teacher("asit_base", **TINY, frames=592, length="any")
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    heads = _heads(192, weak=527)  # a weak head of AudioSet's 527 classes: dropped, frame logits only
    torch.save({**state, **heads}, tmp_path / "ASIT_strong_1.pt")
    path, mapped = convert("pretrainedsed-asit", tmp_path / "ASIT_strong_1.pt", tmp_path / "out")
    assert "weak_head.weight" in mapped.dropped
    converted, meta = load_model(path, "teacher")
    assert meta.frontend["sample_rate"] == 16000 and meta.model_args["length"] == {"mode": "any"}
    features = torch.randn(1, 1, 128, 998)
    pos = model.pos_embed[:, 1:].transpose(1, 2).reshape(1, 192, 8, 37)  # their (8, 37) reading, bicubic to (62, 8)
    pos = F.interpolate(pos, size=(62, 8), mode="bicubic", align_corners=False).reshape(1, 192, -1).transpose(1, 2)
    on_their_grid = create_teacher("asit_base", **TINY, frames=998, length="any")  # the same weights, positions resized by hand
    on_their_grid.load_state_dict({**model.state_dict(), "pos_embed": torch.cat([model.pos_embed[:, :1], pos], dim=1)})
    with torch.no_grad():
        ref = on_their_grid.eval()(features)
        strong, _ = _wrapper_logits(torch.cat([ref.embedding[:, None], ref.tokens], 1), heads)
        out = converted(features)
    assert out.clip_logits is None and torch.allclose(out.frame_logits, strong, atol=1e-4)
    exact = torch.randn(1, 1, 128, 592)  # 592 frames: their positions as stored, no resizing
    plain = create_teacher("asit_base", **TINY, frames=592, length="any")
    plain.load_state_dict({k[len("backbone."):]: v for k, v in converted.state_dict().items() if k.startswith("backbone.")})
    with torch.no_grad():
        assert torch.allclose(converted.backbone(exact).tokens, plain.eval()(exact).tokens, atol=1e-5)


def test_a_file_with_the_teacher_rnn_is_refused_in_one_sentence(tmp_path):
    model = create_teacher("atst_frame_base", **TINY)
    state = {f"model.atst.{k}": v for k, v in model.state_dict().items()}
    torch.save({**state, "seq_model.rnn.weight_ih_l0": torch.zeros(6, 192)}, tmp_path / "rnn.pt")
    with pytest.raises(ValueError, match=r"rnn.pt: holds a sequence model on the transformer \(seq_model\.\*.*hold none\.$"):
        convert("pretrainedsed-atst", tmp_path / "rnn.pt", tmp_path / "out")
    with pytest.raises(ValueError, match=r"is not a pretrainedsed-beats checkpoint; its keys are those of the pretrainedsed-atst format"):
        convert("pretrainedsed-beats", tmp_path / "rnn.pt", tmp_path / "out")


def test_a_frame_student_distils_online_from_a_converted_pretrainedsed_teacher(tmp_path):
    from earmark.audio.manifest import read_manifest
    from earmark.audio.synth import synthesize
    from earmark.distill import DistillConfig, distill

    torch.manual_seed(3)
    data = synthesize(tmp_path / "data", seed=4, clips_per_class=1, soundscapes=8)
    labels = read_manifest(data.soundscapes_tsv).labels.to_list()
    model = create_teacher("beats_tiny")
    state = {f"model.beats.{k}": v for k, v in model.state_dict().items()}  # the wrapper's own names (BEATsWrapper().beats)
    torch.save({**state, **_heads(64, classes=len(labels))}, tmp_path / "BEATs_strong.pt")
    teacher, _ = convert("pretrainedsed-beats", tmp_path / "BEATs_strong.pt", tmp_path / "teacher", labels=labels)
    calls = []
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: calls.append(type(m).__name__))
    try:
        final = distill(DistillConfig(data=str(data.soundscapes_tsv), out=str(tmp_path / "student"), teachers=[str(teacher)],
                                      student="tfsepnet16", task="frame", objective="detect", online_teacher=True, clip_seconds=10.0,
                                      epochs=1, batch_size=4, val_fold=1, test_fold=2, progress=False))
    finally:
        handle.remove()
    assert "BEATs" in calls and not (tmp_path / "student" / "teacher-cache").exists()  # the teacher ran on the batches
    student, meta = load_model(final, "student")
    assert meta.task == "frame" and meta.labels == labels
    assert np.isfinite(next(student.parameters()).detach().numpy()).all()
