"""The one logits -> scores mapping, shared by exported graphs and evaluation."""

import pytest
import torch

from earmark.engine import probabilities
from earmark.export import ScoresHead
from earmark.students import create_student


def test_detect_is_a_sigmoid_per_class_and_classify_a_softmax_over_classes():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    assert torch.allclose(probabilities(logits, "detect"), 1 / (1 + torch.exp(-logits)))
    scenes = probabilities(logits, "classify")
    assert torch.allclose(scenes.sum(-1), torch.ones(2)) and torch.allclose(scenes[1], torch.full((3,), 1 / 3))
    with pytest.raises(ValueError, match="'detect'.*'classify'"):
        probabilities(logits, "softmax")


def test_the_exported_head_maps_with_the_same_function():
    model = create_student("vit_micro_audio", 4, task="frame").eval()
    x = torch.randn(2, 1, 256, 64)
    with torch.no_grad():
        out = model(x)
        frame, clip = ScoresHead(model, "frame", "classify")(x)
    assert torch.equal(clip, probabilities(out.clip_logits, "classify"))
    assert torch.equal(frame, probabilities(out.frame_logits, "detect"))
