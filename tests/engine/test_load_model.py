"""One engine call loads any checkpoint: the model stages register how their families are rebuilt."""

import pytest
import torch
from torch import nn

from earmark.engine import ModelOutput, load_model, register_family, save_checkpoint
from earmark.engine.checkpoint import _FAMILIES, CheckpointMeta
from earmark.export import LoadedModel
from earmark.students import create_student, student_checkpoint_meta
from earmark.teachers import ViTTeacher, create_teacher, teacher_checkpoint_meta


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    student = create_student("vit_micro_audio", 2)
    save_checkpoint(root / "student", student.state_dict(), student_checkpoint_meta(student, "vit_micro_audio", ["a", "b"]))
    teacher = create_teacher("acmsskd_tiny", depth=1)
    save_checkpoint(root / "teacher", teacher.state_dict(), teacher_checkpoint_meta(teacher.frontend, "acmsskd_tiny", {"depth": 1}))
    return root


def test_any_family_loads_through_one_call_and_a_named_family_refuses_the_other(checkpoints):
    student, meta = load_model(checkpoints / "student")
    assert meta.family == "student" and not student.training and type(student).__name__ == "AudioViT"
    teacher, meta = load_model(checkpoints / "teacher", "teacher")
    assert meta.family == "teacher" and isinstance(teacher, ViTTeacher)
    with pytest.raises(ValueError, match=r"holds a student \(vit_micro_audio\), not a teacher; pass a checkpoint written by `earmark convert`"):
        load_model(checkpoints / "student", "teacher")


def test_a_family_no_stage_registered_and_a_quantized_teacher_are_refused_in_one_sentence(tmp_path):
    meta = CheckpointMeta(family="gadget", model="m", model_args={}, frontend={}, labels=[])
    save_checkpoint(tmp_path / "gadget", {}, meta)
    with pytest.raises(ValueError, match="names the model family 'gadget', which no model stage rebuilds"):
        load_model(tmp_path / "gadget")
    teacher = create_teacher("acmsskd_tiny", depth=1)
    meta = teacher_checkpoint_meta(teacher.frontend, "acmsskd_tiny", {"depth": 1}, quantization={"backend": "nncf"})
    save_checkpoint(tmp_path / "q", teacher.state_dict(), meta)
    with pytest.raises(ValueError, match="a quantized teacher cannot be rebuilt"):
        load_model(tmp_path / "q")


class Gadget(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(2))

    def forward(self, features):
        return ModelOutput(clip_logits=features.flatten(1).mean(-1, keepdim=True) * self.scale)


def test_a_newly_registered_family_loads_in_export_without_export_knowing_it(tmp_path, monkeypatch):
    monkeypatch.setitem(_FAMILIES, "gadget", None)  # removed again after the test
    register_family("gadget", lambda meta: Gadget(), "a test")
    model = Gadget()
    model.scale.data = torch.tensor([2.0, 3.0])
    student = create_student("vit_micro_audio", 2)  # any frontend will do
    meta = CheckpointMeta(family="gadget", model="gadget", model_args={}, frontend=student.frontend.to_dict(), labels=["a", "b"])
    save_checkpoint(tmp_path / "g", model.state_dict(), meta)
    loaded = LoadedModel.open(tmp_path / "g")
    assert isinstance(loaded.model, Gadget) and torch.equal(loaded.model.scale, torch.tensor([2.0, 3.0])) and not loaded.quantized
