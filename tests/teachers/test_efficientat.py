"""EfficientAT (fschmid56/EfficientAT): an mn01_as state dict written here key by key in the released layout from random
tensors, converted, and checked against the network's computation written out with torch.nn.functional."""

import pytest
import torch
import torch.nn.functional as F

from earmark.engine import load_model
from earmark.teachers.convert import convert

# mn01_as (width 0.1), block by block as the reference's get_model(width_mult=0.1) builds it:
# (input, kernel, expanded, output, SE squeeze width or 0, Hardswish, stride)
MN01 = [(8, 3, 8, 8, 0, False, 1), (8, 3, 8, 8, 0, False, 2), (8, 3, 8, 8, 0, False, 1), (8, 5, 8, 8, 8, False, 2),
        (8, 5, 16, 8, 8, False, 1), (8, 5, 16, 8, 8, False, 1), (8, 3, 24, 8, 0, True, 2), (8, 3, 24, 8, 0, True, 1),
        (8, 3, 24, 8, 0, True, 1), (8, 3, 24, 8, 0, True, 1), (8, 3, 48, 16, 16, True, 1), (16, 3, 64, 16, 16, True, 1),
        (16, 5, 64, 16, 16, True, 2), (16, 5, 96, 16, 24, True, 1), (16, 5, 96, 16, 24, True, 1)]
LAST, HIDDEN, CLASSES = 96, 128, 527


def _conv_bn(state: dict, prefix: str, cout: int, cin: int, kernel: int) -> None:
    state[f"{prefix}.0.weight"] = torch.randn(cout, cin, kernel, kernel) / (cin * kernel * kernel) ** 0.5
    state[f"{prefix}.1.weight"], state[f"{prefix}.1.bias"] = 1 + 0.1 * torch.randn(cout), 0.1 * torch.randn(cout)
    state[f"{prefix}.1.running_mean"], state[f"{prefix}.1.running_var"] = 0.1 * torch.randn(cout), 0.5 + torch.rand(cout)
    state[f"{prefix}.1.num_batches_tracked"] = torch.tensor(1000)


def _layers(cin: int, expanded: int, squeeze: int) -> list[str]:
    """The sub-layers of one inverted residual block in ``block.{j}`` order."""
    return (["expand"] if expanded != cin else []) + ["depthwise"] + (["se"] if squeeze else []) + ["project"]


def official_mn01(classes: int = CLASSES) -> dict:
    """``MN.state_dict()`` for width 0.1 with the MLP head: features.0 stem, features.1-15 blocks, features.16, classifier.2 / .5."""
    state: dict = {}
    _conv_bn(state, "features.0", 8, 1, 3)
    for i, (cin, kernel, expanded, cout, squeeze, _, _) in enumerate(MN01, 1):
        for j, layer in enumerate(_layers(cin, expanded, squeeze)):
            prefix = f"features.{i}.block.{j}"
            if layer == "expand":
                _conv_bn(state, prefix, expanded, cin, 1)
            elif layer == "depthwise":
                _conv_bn(state, prefix, expanded, 1, kernel)
            elif layer == "project":
                _conv_bn(state, prefix, cout, expanded, 1)
            else:
                se = f"{prefix}.conc_se_layers.0"
                state[f"{se}.fc1.weight"], state[f"{se}.fc1.bias"] = torch.randn(squeeze, expanded) / expanded ** 0.5, torch.randn(squeeze)
                state[f"{se}.fc2.weight"], state[f"{se}.fc2.bias"] = torch.randn(expanded, squeeze) / squeeze ** 0.5, torch.randn(expanded)
    _conv_bn(state, "features.16", LAST, 16, 1)
    state["classifier.2.weight"], state["classifier.2.bias"] = torch.randn(HIDDEN, LAST) / LAST ** 0.5, 0.1 * torch.randn(HIDDEN)
    state["classifier.5.weight"], state["classifier.5.bias"] = torch.randn(classes, HIDDEN) / HIDDEN ** 0.5, 0.1 * torch.randn(classes)
    return state


def reference_logits(state: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MN._forward_impl in eval: (logits, pooled features) for log mels (B, 1, 128, frames)."""
    def conv_bn(x, prefix, stride=1, groups=1, act=None):
        weight = state[f"{prefix}.0.weight"]
        x = F.conv2d(x, weight, None, stride, weight.shape[-1] // 2, 1, groups)
        x = F.batch_norm(x, state[f"{prefix}.1.running_mean"], state[f"{prefix}.1.running_var"], state[f"{prefix}.1.weight"],
                         state[f"{prefix}.1.bias"], False, 0.0, 1e-3)
        return act(x) if act else x

    x = conv_bn(x, "features.0", 2, act=F.hardswish)
    for i, (cin, _, expanded, cout, squeeze, hardswish, stride) in enumerate(MN01, 1):
        act = F.hardswish if hardswish else F.relu
        y = x
        for j, layer in enumerate(_layers(cin, expanded, squeeze)):
            prefix = f"features.{i}.block.{j}"
            if layer == "expand":
                y = conv_bn(y, prefix, act=act)
            elif layer == "depthwise":
                y = conv_bn(y, prefix, stride, expanded, act=act)
            elif layer == "project":
                y = conv_bn(y, prefix)
            else:
                se = f"{prefix}.conc_se_layers.0"
                s = F.relu(F.linear(y.mean((2, 3)), state[f"{se}.fc1.weight"], state[f"{se}.fc1.bias"]))
                y = y * torch.sigmoid(F.linear(s, state[f"{se}.fc2.weight"], state[f"{se}.fc2.bias"]))[:, :, None, None]
        x = x + y if stride == 1 and cin == cout else y
    pooled = conv_bn(x, "features.16", act=F.hardswish).mean((2, 3))
    hidden = F.hardswish(F.linear(pooled, state["classifier.2.weight"], state["classifier.2.bias"]))
    return F.linear(hidden, state["classifier.5.weight"], state["classifier.5.bias"]), pooled


def test_mn01_as_converts_to_the_reference_computation_with_its_frontend_and_audioset_names(tmp_path):
    torch.manual_seed(0)
    state = official_mn01()
    torch.save(state, tmp_path / "mn01_as_mAP_298.pt")
    path, mapped = convert("efficientat", tmp_path / "mn01_as_mAP_298.pt", tmp_path / "out")
    model, meta = load_model(path, "teacher")
    assert mapped.name == "mn01_as" and not mapped.dropped
    assert meta.task == "clip" and meta.objective == "detect" and len(meta.labels) == CLASSES and meta.labels[:2] == ["Speech", "Male speech, man speaking"]
    frontend = meta.frontend
    assert (frontend["name"], frontend["sample_rate"], frontend["n_fft"], frontend["win_length"], frontend["hop_length"],
            frontend["n_mels"], frontend["f_max"], frontend["preemphasis"]) == ("efficientat", 32000, 1024, 800, 320, 128, 15000.0, 0.97)
    for frames in (1000, 200):  # 10 s at 32 kHz (hop 320), and a 2-s clip
        features = torch.randn(2, 1, 128, frames)
        with torch.no_grad():
            out = model(features)
            logits, pooled = reference_logits(state, features)
        assert (out.clip_logits - logits).abs().max() < 1e-4 and (out.embedding - pooled).abs().max() < 1e-4
        assert out.frame_embedding.shape == (2, -(-frames // 32), LAST) and out.frame_hop_seconds == pytest.approx(0.32)


def test_other_heads_and_families_are_refused_in_one_sentence(tmp_path):
    state = official_mn01()
    fc = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    fc["classifier.0.weight"], fc["classifier.1.weight"] = torch.randn(CLASSES, LAST, 1, 1), torch.ones(CLASSES)
    torch.save(fc, tmp_path / "mn10_as_fc.pt")
    with pytest.raises(ValueError, match=r"mn10_as_fc.pt: holds no MLP head \(classifier.5.\*\); .*attention-pooling heads\.$"):
        convert("efficientat", tmp_path / "mn10_as_fc.pt", tmp_path / "out")
    torch.save(state, tmp_path / "mn01.pt")
    with pytest.raises(ValueError, match=r"is not a panns checkpoint; its keys are those of the efficientat format"):
        convert("panns", tmp_path / "mn01.pt", tmp_path / "out")
