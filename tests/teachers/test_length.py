"""Each family meets input length as its reference pipeline does: a short clip gives what the same clip padded
by hand to the reference length gives (AST / SSAST / ASiT), BEATs and ATST take any length, and resized positions
are cut around the centre where SSAST and AST cut them."""

import numpy as np
import pytest
import torch

from earmark.audio.features_torch import Frontend
from earmark.teachers import create_teacher
from earmark.teachers.layers import resize_grid


def _clip(seconds: float, sample_rate: int) -> torch.Tensor:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) + 0.05 * rng.standard_normal(t.size)
    return torch.tensor(wave, dtype=torch.float32)[None]


def _by_hand(features: torch.Tensor, spec, frames: int) -> torch.Tensor:
    """The reference loaders: the log-mel fbank zero-padded (ZeroPad2d) or cut to ``frames``, then normalised."""
    fbank = features * spec.norm_scale + spec.norm_mean  # undo earmark's normalisation
    fbank = torch.nn.functional.pad(fbank, (0, max(frames - fbank.shape[-1], 0)))[..., :frames]
    return (fbank - spec.norm_mean) / spec.norm_scale


@pytest.mark.parametrize("name, frames", [("ast_tiny", 1024), ("ssast_frame_tiny", 1024), ("asit_tiny", 592)])
@pytest.mark.parametrize("seconds", [6.0, 10.0])
def test_a_clip_gives_what_it_gives_padded_by_hand_to_the_reference_length(name, frames, seconds):
    torch.manual_seed(0)
    model = create_teacher(name, **({"depth": 2} if name.startswith("ssast") else {})).eval()
    spec = model.frontend
    features = Frontend(spec)(_clip(seconds, spec.sample_rate)).unsqueeze(1)
    hand = _by_hand(features, spec, frames)
    assert hand.shape[-1] == frames and features.shape[-1] != frames
    with torch.no_grad():
        ours, reference = model(features), model(hand)
    assert torch.allclose(ours.embedding, reference.embedding, atol=1e-5)
    assert torch.allclose(ours.tokens, reference.tokens, atol=1e-5)
    kept = -(-min(features.shape[-1], frames) // model.cfg.stride[1])  # frame steps that start inside the clip
    assert ours.frame_embedding.shape[1] == min(kept, reference.frame_embedding.shape[1])
    assert torch.allclose(ours.frame_embedding, reference.frame_embedding[:, : ours.frame_embedding.shape[1]], atol=1e-5)


@pytest.mark.parametrize("name, per_second", [("beats_tiny", 6.25 * 8), ("atst_frame_tiny", 25)])
def test_beats_and_atst_take_any_length(name, per_second):
    model = create_teacher(name).eval()
    spec = model.frontend
    with torch.no_grad():
        six, ten = (model(Frontend(spec)(_clip(s, spec.sample_rate)).unsqueeze(1)) for s in (6.0, 10.0))
    assert six.tokens.shape[1] < ten.tokens.shape[1]
    assert ten.tokens.shape[1] == pytest.approx(10 * per_second, abs=per_second / 4)


def test_resized_positions_are_cut_around_the_centre_as_ssast_does():
    torch.manual_seed(0)
    model = create_teacher("ssast_patch_tiny", depth=1, length="resize").eval()
    grid = model.grid  # (8, 64): SSAST's pretraining grid
    pos = model.pos_embed[:, 2:].reshape(1, *grid, -1)
    t = 32  # fine-tuning on 512 frames, as SSAST's ESC-50 recipe
    start = int(grid[1] / 2) - int(t / 2)  # ASTModel: new_pos_embed[..., int(p_t_dim/2) - int(t_dim/2): ...]
    expected = pos[:, :, start:start + t].reshape(1, grid[0] * t, -1)
    assert torch.equal(resize_grid(model.pos_embed[:, 2:], grid, (grid[0], t), centre=True), expected)
    with torch.no_grad():
        out = model(torch.randn(1, 1, 128, 512))
    assert out.tokens.shape[1] == grid[0] * t


def test_a_grid_longer_in_one_axis_is_cut_in_the_other_and_interpolated_in_this_one():
    pos = torch.randn(1, 12 * 101, 4)
    resized = resize_grid(pos, (12, 101), (10, 120), centre=True).reshape(1, 10, 120, 4)
    cut = pos.reshape(1, 12, 101, 4)[:, 1:11]  # AST: 6 - int(10 / 2) = 1
    stretched = torch.nn.functional.interpolate(cut.permute(0, 3, 1, 2), size=(10, 120), mode="bilinear", align_corners=False)
    assert torch.allclose(resized, stretched.permute(0, 2, 3, 1), atol=1e-6)


def test_the_length_policy_is_a_constructor_option_with_a_clear_error():
    with pytest.raises(ValueError, match="choose length fit, resize or any"):
        create_teacher("ast_tiny", length="pad")


def test_an_exported_teacher_pads_inside_the_onnx_graph(tmp_path):
    """ONNX export traces the policy: 2-s features in, the outputs of the same features padded by hand to the trained 256."""
    from earmark.engine.checkpoint import save_checkpoint
    from earmark.export import export_onnx, session
    from earmark.teachers import TeacherClassifier, teacher_checkpoint_meta

    torch.manual_seed(0)
    model = TeacherClassifier(create_teacher("ast_tiny", frames=256), 3, "cls_norm").eval()
    spec = model.frontend
    meta = teacher_checkpoint_meta(spec, "ast_tiny", {"frames": 256}, ["a", "b", "c"], "clip", "cls_norm", window_seconds=2.0)
    save_checkpoint(tmp_path / "teacher", model.state_dict(), meta)
    result = export_onnx(tmp_path / "teacher", tmp_path / "t.onnx")
    features = Frontend(spec)(_clip(2.0, spec.sample_rate)).unsqueeze(1)
    onnx_scores = session(result.path).run(None, {session(result.path).get_inputs()[0].name: features.numpy()})[0]
    with torch.no_grad():
        reference = torch.softmax(model(_by_hand(features, spec, 256)).clip_logits, dim=-1)
    assert np.allclose(onnx_scores, reference.numpy(), atol=1e-5)
