"""Official checkpoint layouts, built from random tensors of the right shapes, convert and reproduce the model."""

import argparse

import pytest
import torch

from earmark.teachers import TeacherClassifier, create_teacher, teacher_from_checkpoint
from earmark.teachers.convert import convert

SMALL_VIT = dict(dim=192, heads=3, depth=1)


def _same_outputs(original, path, features):
    converted, meta = teacher_from_checkpoint(path)
    with torch.no_grad():
        a, b = original.eval()(features), converted(features)
    for name in ("clip_embedding", "tokens", "clip_logits"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or torch.allclose(x, y, atol=1e-5), name
    return meta


def test_beats_finetuned_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = TeacherClassifier(create_teacher("beats_tiny"), 3, "linear")
    state = {k[len("backbone."):]: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    w = state.pop("encoder.pos_conv.0.weight")
    g = w.norm(dim=(0, 1), keepdim=True)  # legacy weight_norm(dim=2) keys
    state["encoder.pos_conv.0.weight_g"], state["encoder.pos_conv.0.weight_v"] = g, w
    for i in range(1, 2):
        state[f"encoder.layers.{i}.self_attn.relative_attention_bias.weight"] = state["encoder.layers.0.self_attn.relative_attention_bias.weight"]
    state["predictor.weight"], state["predictor.bias"] = model.head.weight, model.head.bias
    cfg = dict(embed_dim=32, encoder_embed_dim=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_embed_dim=128,
               input_patch_size=16, conv_pos=16, conv_pos_groups=4, num_buckets=320, max_distance=800, deep_norm=True,
               relative_position_embedding=True, gru_rel_pos=True, layer_norm_first=False, finetuned_model=True)
    torch.save({"cfg": cfg, "model": state, "label_dict": {0: "/m/a", 1: "/m/b", 2: "/m/c"}}, tmp_path / "BEATs.pt")
    path, mapped = convert("beats", tmp_path / "BEATs.pt", tmp_path / "out")
    meta = _same_outputs(model, path, torch.randn(2, 1, 128, 300))
    assert meta.labels == ["/m/a", "/m/b", "/m/c"] and meta.frontend["name"] == "beats"


@pytest.mark.parametrize("frame", [False, True])
def test_atst_lightning_checkpoint_takes_the_ema_teacher(tmp_path, frame):
    torch.manual_seed(1)
    model = create_teacher(f"atst_{'frame' if frame else 'clip'}_base", **SMALL_VIT)
    enc = {f"model.teacher.encoder.{'norm_frame' + k[4:] if frame and k.startswith('norm.') else k}": v for k, v in model.state_dict().items()}
    enc["model.teacher.encoder.mask_embed"] = torch.zeros(1, 1, 192)
    student = {k.replace("teacher", "student"): torch.randn_like(v) for k, v in enc.items()}
    projector = {"model.teacher.projector.0.weight": torch.randn(4096, 192)}
    torch.save({"state_dict": {**enc, **student, **projector}, "epoch": 3, "global_step": 100}, tmp_path / "atst.ckpt")
    path, mapped = convert("atst-frame" if frame else "atst-clip", tmp_path / "atst.ckpt", tmp_path / "out")
    assert mapped.dropped  # the student and projector are reported, not silently kept
    _same_outputs(model, path, torch.randn(2, 1, 64, 401))


def test_asit_checkpoint_with_args_namespace(tmp_path):
    torch.manual_seed(2)
    model = create_teacher("asit_base", **SMALL_VIT, frames=592)
    teacher = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    teacher["head_cls.mlp.0.weight"] = torch.randn(2048, 192)
    torch.save({"teacher": teacher, "student": {f"module.{k}": v for k, v in teacher.items()}, "epoch": 1,
                "args": argparse.Namespace(num_frames=592)}, tmp_path / "asit.pth")
    path, mapped = convert("asit", tmp_path / "asit.pth", tmp_path / "out", sample_rate=32000)
    meta = _same_outputs(model, path, torch.randn(2, 1, 128, 300))
    assert meta.frontend["sample_rate"] == 32000 and "head_cls.mlp.0.weight" in mapped.dropped


@pytest.mark.parametrize("name", ["ssast_patch_base", "ssast_frame_base"])
def test_ssast_dataparallel_checkpoint(tmp_path, name):
    torch.manual_seed(3)
    ssast = create_teacher(name, **SMALL_VIT)
    state = {f"module.v.{k}": v for k, v in ssast.state_dict().items()}
    state.update({"module.v.head.weight": torch.randn(1000, 192), "module.cpredlayer.0.weight": torch.randn(192, 192),
                  "module.p_input_fdim": torch.tensor(128), "module.mask_embed": torch.zeros(1, 1, 192)})
    torch.save(state, tmp_path / "ssast.pth")
    path, mapped = convert("ssast", tmp_path / "ssast.pth", tmp_path / "ssast")
    assert mapped.name == name  # the patch shape tells the patch model from the frame model
    _same_outputs(ssast, path, torch.randn(1, 1, 128, 512))


def test_ast_dataparallel_checkpoint_keeps_its_head(tmp_path):
    torch.manual_seed(3)
    ast = TeacherClassifier(create_teacher("ast_base", **SMALL_VIT), 4, "cls_norm")
    state = {f"module.v.{k[len('backbone.'):]}": v for k, v in ast.state_dict().items() if k.startswith("backbone.")}
    state.update({f"module.mlp_head.{k[5:]}": v for k, v in ast.state_dict().items() if k.startswith("head.")})
    torch.save(state, tmp_path / "ast.pth")
    path, mapped = convert("ast", tmp_path / "ast.pth", tmp_path / "ast")
    assert mapped.overrides["stride"] == (10, 10)
    _same_outputs(ast, path, torch.randn(1, 1, 128, 1024))


def test_unknown_and_missing_keys_are_listed(tmp_path):
    model = create_teacher("asit_base", **SMALL_VIT, frames=592)
    teacher = {f"backbone.{k}": v for k, v in model.state_dict().items() if "blocks.0.mlp" not in k}
    teacher["backbone.surprise"] = torch.zeros(1)
    torch.save({"teacher": teacher}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"missing \['blocks.0.mlp.fc1.bias'.*unknown \['surprise'\]"):
        convert("asit", tmp_path / "bad.pth", tmp_path / "out")


def test_pickled_objects_outside_the_allow_list_are_refused(tmp_path):
    import fractions

    torch.save({"model": {}, "obj": fractions.Fraction(1, 3)}, tmp_path / "evil.pt")  # any class not allow-listed
    with pytest.raises(ValueError, match="cannot be read safely.*never unpickles"):
        convert("beats", tmp_path / "evil.pt", tmp_path / "out")
