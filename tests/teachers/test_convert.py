"""Official checkpoint layouts, built here from random tensors of the right shapes, convert and reproduce the model;
every way a file can be wrong is refused in one sentence that names the problem."""

import argparse
import fractions

import pytest
import torch

from earmark.cli import main
from earmark.engine import load_model
from earmark.teachers import TeacherClassifier, create_teacher
from earmark.teachers.convert import convert

TINY = dict(dim=192, heads=3, depth=12)  # the released tiny width at the released depth, small enough for a CPU


def _same_outputs(original, path, features):
    converted, meta = load_model(path, "teacher")
    with torch.no_grad():
        a, b = original.eval()(features), converted(features)
    for name in ("embedding", "tokens", "clip_logits"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or torch.allclose(x, y, atol=1e-5), name
    return meta


def _atst_lightning(model, frame_norm: bool, cls_token: bool = True) -> dict:
    state = model.state_dict()
    if not cls_token:
        state.pop("cls_token")
    enc = {f"model.teacher.encoder.{'norm_frame' + k[4:] if frame_norm and k.startswith('norm.') else k}": v for k, v in state.items()}
    enc["model.teacher.encoder.mask_embed"] = torch.zeros(1, 1, 192)
    student = {k.replace("teacher", "student"): torch.randn_like(v) for k, v in enc.items()}
    return {**enc, **student, "model.teacher.projector.0.weight": torch.randn(4096, 192)}


def _ssast_file(name: str, path, **changes) -> torch.nn.Module:
    ssast = create_teacher(name, **TINY)
    state = {f"module.v.{k}": v for k, v in ssast.state_dict().items()}
    state.update({"module.v.head.weight": torch.randn(1000, 192), "module.cpredlayer.0.weight": torch.randn(192, 192),
                  "module.p_input_fdim": torch.tensor(128), "module.mask_embed": torch.zeros(1, 1, 192)})
    state.update(changes)
    torch.save({k: v for k, v in state.items() if v is not None}, path)
    return ssast


def test_beats_finetuned_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = TeacherClassifier(create_teacher("beats_tiny"), 3, "linear")
    state = {k[len("backbone."):]: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    w = state.pop("encoder.pos_conv.0.weight")
    g = w.norm(dim=(0, 1), keepdim=True)  # legacy weight_norm(dim=2) keys
    state["encoder.pos_conv.0.weight_g"], state["encoder.pos_conv.0.weight_v"] = g, w
    state["encoder.layers.1.self_attn.relative_attention_bias.weight"] = state["encoder.layers.0.self_attn.relative_attention_bias.weight"]
    state["predictor.weight"], state["predictor.bias"] = model.head.weight, model.head.bias
    cfg = dict(embed_dim=32, encoder_embed_dim=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_embed_dim=128,
               input_patch_size=16, conv_pos=16, conv_pos_groups=4, num_buckets=320, max_distance=800, deep_norm=True,
               relative_position_embedding=True, gru_rel_pos=True, layer_norm_first=False, finetuned_model=True)
    torch.save({"cfg": cfg, "model": state, "label_dict": {0: "/m/a", 1: "/m/b", 2: "/m/c"}}, tmp_path / "BEATs.pt")
    path, mapped = convert("beats", tmp_path / "BEATs.pt", tmp_path / "out")
    meta = _same_outputs(model, path, torch.randn(2, 1, 128, 300))
    assert meta.labels == ["/m/a", "/m/b", "/m/c"] and meta.frontend["name"] == "beats"
    assert meta.model_args["length"] == {"mode": "any"} and meta.objective == "detect"  # AudioSet: a sigmoid per class


@pytest.mark.parametrize("frame", [False, True])
def test_atst_lightning_checkpoint_takes_the_ema_teacher(tmp_path, frame):
    torch.manual_seed(1)
    model = create_teacher(f"atst_{'frame' if frame else 'clip'}_base", **TINY)
    torch.save({"state_dict": _atst_lightning(model, frame_norm=frame), "epoch": 3, "global_step": 100}, tmp_path / "atst.ckpt")
    path, mapped = convert("atst-frame" if frame else "atst-clip", tmp_path / "atst.ckpt", tmp_path / "out")
    assert "model.teacher.projector.0.weight" in mapped.dropped  # the student and projector are reported, not silently kept
    _same_outputs(model, path, torch.randn(2, 1, 64, 401))


def test_atst_frame_as_atst_sed_stores_it_converts_as_frame_only(tmp_path):
    """atst_as2M.ckpt: an unused cls token and the final norm named ``norm``, from FrameATST's Lightning module."""
    torch.manual_seed(1)
    model = create_teacher("atst_frame_base", **TINY)
    state = _atst_lightning(model, frame_norm=False)
    state["model.teacher.encoder.cls_token"] = torch.randn(1, 1, 192)
    torch.save({"state_dict": state, "hyper_parameters": {"arch": "base", "avg_blocks": 0, "symmetric": True}}, tmp_path / "atst_as2M.ckpt")
    path, mapped = convert("atst-frame", tmp_path / "atst_as2M.ckpt", tmp_path / "out")
    assert "model.teacher.encoder.cls_token" in mapped.dropped
    _same_outputs(model, path, torch.randn(2, 1, 64, 401))
    with pytest.raises(ValueError, match=r"atst_as2M.ckpt: is not a atst-clip checkpoint; its keys are those of the atst-frame format"):
        convert("atst-clip", tmp_path / "atst_as2M.ckpt", tmp_path / "clip")
    torch.save({f"encoder.encoder.{k[len('model.teacher.encoder.'):]}": v for k, v in state.items()
                if k.startswith("model.teacher.encoder.")}, tmp_path / "sed.ckpt")  # ATST-SED's fine-tuned prefix
    meta = _same_outputs(model, convert("atst-frame", tmp_path / "sed.ckpt", tmp_path / "sed")[0], torch.randn(1, 1, 64, 101))
    assert meta.frontend["name"] == "atst_sed" and meta.frontend["db_min"] == -50.0  # ATST-SED clamps its decibels


def test_an_atst_clip_file_mentioning_symmetric_stays_clip_and_no_hint_drops_its_cls_token(tmp_path):
    torch.manual_seed(1)
    model = create_teacher("atst_clip_base", **TINY)
    torch.save({"state_dict": _atst_lightning(model, frame_norm=False), "hyper_parameters": {"arch": "base", "symmetric": True}},
               tmp_path / "clip.ckpt")
    path, mapped = convert("atst-clip", tmp_path / "clip.ckpt", tmp_path / "out")
    assert "model.teacher.encoder.cls_token" not in mapped.dropped
    _same_outputs(model, path, torch.randn(1, 1, 64, 401))
    with pytest.raises(ValueError, match=r"clip.ckpt: is not a atst-frame checkpoint; its keys are those of the atst-clip format"):
        convert("atst-frame", tmp_path / "clip.ckpt", tmp_path / "frame")


def test_asit_checkpoint_with_args_namespace(tmp_path):
    torch.manual_seed(2)
    model = create_teacher("asit_base", **TINY, frames=592)
    teacher = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    teacher["head_cls.mlp.0.weight"] = torch.randn(2048, 192)
    torch.save({"teacher": teacher, "student": {f"module.{k}": v for k, v in teacher.items()}, "epoch": 1,
                "args": argparse.Namespace(num_frames=592)}, tmp_path / "asit.pth")
    path, mapped = convert("asit", tmp_path / "asit.pth", tmp_path / "out", sample_rate=32000)
    meta = _same_outputs(model, path, torch.randn(2, 1, 128, 300))
    assert meta.frontend["sample_rate"] == 32000 and "head_cls.mlp.0.weight" in mapped.dropped
    assert meta.model_args["length"] == {"mode": "fit", "frames": 592, "crop": "start"}


@pytest.mark.parametrize("name", ["ssast_patch_tiny", "ssast_frame_tiny"])
def test_ssast_dataparallel_checkpoint_keeps_its_size_name(tmp_path, name):
    torch.manual_seed(3)
    ssast = _ssast_file(name, tmp_path / "ssast.pth")
    path, mapped = convert("ssast", tmp_path / "ssast.pth", tmp_path / "ssast")
    assert mapped.name == name  # the patch shape tells the patch model from the frame model, the width the size
    meta = _same_outputs(ssast, path, torch.randn(1, 1, 128, 1024))
    assert meta.model == name and meta.model_args["length"] == {"mode": "fit", "frames": 1024, "crop": "centre"}


def _ast_file(path, frames: int = 1024, classes: int = 4) -> TeacherClassifier:
    ast = TeacherClassifier(create_teacher("ast_base", **TINY, frames=frames), classes, "cls_norm")
    with torch.no_grad():  # a small-variance embedding makes the head's LayerNorm eps matter
        ast.backbone.norm.weight.mul_(0.003)
        ast.backbone.norm.bias.zero_()
    state = {f"module.v.{k[len('backbone.'):]}": v for k, v in ast.state_dict().items() if k.startswith("backbone.")}
    state.update({f"module.mlp_head.{k[5:]}": v for k, v in ast.state_dict().items() if k.startswith("head.")})
    state["module.v.head.weight"] = torch.randn(1000, 192)  # DeiT's unused ImageNet head
    torch.save(state, path)
    return ast


def test_ast_dataparallel_checkpoint_keeps_its_head_with_pytorch_layernorm(tmp_path):
    torch.manual_seed(3)
    ast = _ast_file(tmp_path / "ast.pth")
    path, mapped = convert("ast", tmp_path / "ast.pth", tmp_path / "ast")
    assert mapped.overrides["stride"] == (10, 10) and mapped.overrides["frames"] == 1024
    assert _same_outputs(ast, path, torch.randn(1, 1, 128, 1024)).objective == "detect"  # AST's heads are trained with BCE
    converted, _ = load_model(path, "teacher")
    reference_head = torch.nn.Sequential(torch.nn.LayerNorm(192), torch.nn.Linear(192, 4))  # AST's mlp_head, torch defaults
    reference_head.load_state_dict(converted.head.state_dict())
    with torch.no_grad():
        out = converted(torch.randn(1, 1, 128, 1024))
        assert torch.allclose(out.clip_logits, reference_head(out.embedding), atol=1e-6)
        eps6 = torch.nn.functional.layer_norm(out.embedding, (192,), reference_head[0].weight, reference_head[0].bias, 1e-6)
        assert not torch.allclose(out.clip_logits, reference_head[1](eps6), atol=1e-4)  # the eps is visible at this scale


def test_ast_speech_commands_geometry(tmp_path):
    """The released Speech Commands model: 128 x 128 input at stride 10, 12 x 12 = 144 patches."""
    torch.manual_seed(4)
    ast = _ast_file(tmp_path / "sc.pth", frames=128, classes=35)
    path, mapped = convert("ast", tmp_path / "sc.pth", tmp_path / "sc")
    assert mapped.overrides["stride"] == (10, 10) and mapped.overrides["frames"] == 128
    _same_outputs(ast, path, torch.randn(2, 1, 128, 128))


def test_unknown_and_missing_keys_are_listed(tmp_path):
    model = create_teacher("asit_base", **TINY, frames=592)
    teacher = {f"backbone.{k}": v for k, v in model.state_dict().items() if "blocks.0.mlp" not in k}
    teacher["backbone.surprise"] = torch.zeros(1)
    torch.save({"teacher": teacher}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"missing \['blocks.0.mlp.fc1.bias'.*unknown \['surprise'\]"):
        convert("asit", tmp_path / "bad.pth", tmp_path / "out")


def test_a_checkpoint_missing_its_last_block_is_refused(tmp_path):
    _ssast_file("ssast_patch_tiny", tmp_path / "ssast.pth")
    state = {k: v for k, v in torch.load(tmp_path / "ssast.pth").items() if not k.startswith("module.v.blocks.11.")}
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(ValueError, match=r"cut.pth: holds 11 transformer blocks where every released SSAST model has 12 "
                                         r"\(blocks \[11\] are missing\); the file is incomplete"):
        convert("ssast", tmp_path / "cut.pth", tmp_path / "out")


def test_the_wrong_format_names_the_family_of_the_file(tmp_path):
    torch.manual_seed(5)
    _ssast_file("ssast_patch_tiny", tmp_path / "ssast.pth")
    with pytest.raises(ValueError, match=r"ssast.pth: is not a ast checkpoint; its keys are those of the ssast format, "
                                         r"so run `earmark convert --from ssast`"):
        convert("ast", tmp_path / "ssast.pth", tmp_path / "out")
    model = create_teacher("atst_clip_base", **TINY)
    torch.save({"state_dict": _atst_lightning(model, frame_norm=False)}, tmp_path / "atst.ckpt")
    with pytest.raises(ValueError, match=r"is not a beats checkpoint; its keys are those of the atst-clip format"):
        convert("beats", tmp_path / "atst.ckpt", tmp_path / "out")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"is not a asit checkpoint; its keys match none of the formats earmark reads"):
        convert("asit", tmp_path / "other.pt", tmp_path / "out")


def test_a_refused_pickle_names_the_global_and_keeps_safe_loading(tmp_path):
    torch.save({"model": {}, "obj": fractions.Fraction(1, 3)}, tmp_path / "evil.pt")  # any class not allow-listed
    with pytest.raises(ValueError) as err:
        convert("beats", tmp_path / "evil.pt", tmp_path / "out")
    message = str(err.value)
    assert "holds a pickled fractions.Fraction" in message and "reads only tensors and plain values" in message
    assert "weights_only" not in message and "\n" not in message


@pytest.mark.parametrize("damage", ["truncated", "legacy truncated", "garbage", "empty"])
def test_a_damaged_file_is_called_corrupt_or_truncated(tmp_path, damage):
    legacy = damage.startswith("legacy")
    torch.save({"model": {"w": torch.zeros(4096)}}, tmp_path / "good.pt", _use_new_zipfile_serialization=not legacy)
    data = (tmp_path / "good.pt").read_bytes()
    bad = {"garbage": b"not a checkpoint at all" * 8, "empty": b""}.get(damage, data[: len(data) // 2])
    (tmp_path / "bad.pt").write_bytes(bad)
    with pytest.raises(ValueError, match=r"bad.pt: is corrupt or truncated .*; download or copy it again\.$"):
        convert("beats", tmp_path / "bad.pt", tmp_path / "out")


def test_cli_names_a_student_file_given_as_a_teacher(tmp_path, capsys):
    from earmark.students import create_student

    state = {f"conv_layers.0._conv.weight" if k == "stem.0.0.weight" else k: v for k, v in create_student("tfsepnet32", 10).state_dict().items()}
    torch.save(state, tmp_path / "tfsepnet.ckpt")
    assert main(["convert", "--from", "beats", str(tmp_path / "tfsepnet.ckpt"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "is not a beats checkpoint; its keys are those of the tfsepnet format" in err and err.count("\n") == 1
