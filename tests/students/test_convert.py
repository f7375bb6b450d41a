"""`earmark convert --from tfsepnet`: the reference TF-SepNet's checkpoints (plain and Lightning) become students whose
logits equal the reference forward, written here from the reference's published structure (easy_dcase_task1)."""

import pytest
import torch
import torch.nn.functional as F

from earmark.cli import main
from earmark.engine import load_model
from earmark.students import count, one_second_input
from earmark.students.convert import DCASE_SCENES, convert_tfsepnet

DEPTH17 = ["N", 1, 1, "N", "M", 1.5, 1.5, "N", "M", 2, 2, "N", "M", 2.5, 2.5, 2.5, "N"]  # model/backbones.py, TFSepNet cfg[17]


def reference_state(c: int = 64, classes: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the reference's names: ConvBnRelu = ``_conv`` + ``_bn``, blocks at their cfg index."""
    g = torch.Generator().manual_seed(seed)
    state = {}

    def conv_bn(prefix, cin, cout, kernel, groups=1):
        fan_in = cin // groups * kernel[0] * kernel[1]
        state[f"{prefix}._conv.weight"] = torch.randn(cout, cin // groups, *kernel, generator=g) * (2 / fan_in) ** 0.5
        state[f"{prefix}._bn.weight"] = 1 + 0.2 * torch.randn(cout, generator=g)
        state[f"{prefix}._bn.bias"] = 0.2 * torch.randn(cout, generator=g)
        state[f"{prefix}._bn.running_mean"] = 0.2 * torch.randn(cout, generator=g)
        state[f"{prefix}._bn.running_var"] = 1 + 0.5 * torch.rand(cout, generator=g)
        state[f"{prefix}._bn.num_batches_tracked"] = torch.tensor(100)

    conv_bn("conv_layers.0", 1, c // 2, (3, 3))
    conv_bn("conv_layers.1", c // 2, 2 * c, (3, 3), groups=c // 2)
    width = 2 * c
    for i, item in enumerate(DEPTH17):
        if isinstance(item, str):
            continue
        out = int(item * c)
        half = out // 2
        if out != width:
            conv_bn(f"middle_layers.{i}.trans_conv", width, out, (1, 1))
        conv_bn(f"middle_layers.{i}.freq_dw_conv", half, half, (3, 1), groups=half)
        conv_bn(f"middle_layers.{i}.freq_pw_conv", half, half, (1, 1))
        conv_bn(f"middle_layers.{i}.temp_dw_conv", half, half, (1, 3), groups=half)
        conv_bn(f"middle_layers.{i}.temp_pw_conv", half, half, (1, 1))
        width = out
    state["classifier.conv.weight"] = torch.randn(classes, width, 1, 1, generator=g) / width ** 0.5
    state["classifier.conv.bias"] = 0.1 * torch.randn(classes, generator=g)
    return state


def reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor, c: int = 64) -> torch.Tensor:
    """The reference TFSepNet.forward in eval mode, written from model/backbones.py, shared.py and classifiers.py."""
    def conv_bn_relu(prefix, x, stride=1, padding=0, groups=1):
        x = F.conv2d(x, state[f"{prefix}._conv.weight"], None, stride, padding, groups=groups)
        x = F.batch_norm(x, state[f"{prefix}._bn.running_mean"], state[f"{prefix}._bn.running_var"],
                         state[f"{prefix}._bn.weight"], state[f"{prefix}._bn.bias"], False, 0.0, 1e-5)
        return F.relu(x)

    x = conv_bn_relu("conv_layers.0", x, 2, 1)
    x = conv_bn_relu("conv_layers.1", x, 2, 1, groups=c // 2)
    width = 2 * c
    for i, item in enumerate(DEPTH17):
        if item == "N":  # ResNorm(lamb=0.1): lambda x + (x - mean) / sqrt(var + eps) over (channel, time)
            x = 0.1 * x + (x - x.mean((1, 3), keepdim=True)) / (x.var((1, 3), keepdim=True) + 1e-5).sqrt()
        elif item == "M":
            x = F.max_pool2d(x, 2, 2)
        else:
            out = int(item * c)
            if out != width:
                x = conv_bn_relu(f"middle_layers.{i}.trans_conv", x)
            width = out
            b, ch, f, t = x.shape
            group = ch // 2  # ShuffleLayer(group=half_channels): reshape(b, c // group, group, f, t), swap, flatten
            x = x.reshape(b, ch // group, group, f, t).permute(0, 2, 1, 3, 4).reshape(b, ch, f, t)
            x1, x2 = torch.split(x, ch // 2, dim=1)
            y1 = conv_bn_relu(f"middle_layers.{i}.freq_dw_conv", x1, padding=(1, 0), groups=ch // 2).mean(2, keepdim=True)
            y1 = conv_bn_relu(f"middle_layers.{i}.freq_pw_conv", y1) + x1
            y2 = conv_bn_relu(f"middle_layers.{i}.temp_dw_conv", x2, padding=(0, 1), groups=ch // 2).mean(3, keepdim=True)
            y2 = conv_bn_relu(f"middle_layers.{i}.temp_pw_conv", y2) + x2
            x = torch.cat((y1, y2), dim=1)
    return F.conv2d(x, state["classifier.conv.weight"], state["classifier.conv.bias"]).mean((-1, -2))  # ConvClassifier


@pytest.mark.parametrize("lightning", [False, True])
def test_reference_checkpoints_convert_to_a_student_with_reference_logits(tmp_path, lightning):
    state = reference_state()
    ckpt = {"state_dict": {f"backbone.{k}": v for k, v in state.items()}, "epoch": 3} if lightning else state
    torch.save(ckpt, tmp_path / "tfsepnet.ckpt")
    path, name, dropped = convert_tfsepnet(tmp_path / "tfsepnet.ckpt", tmp_path / "student")
    model, meta = load_model(path, "student")
    assert name == meta.model == "tfsepnet64" and meta.labels == DCASE_SCENES and not dropped
    x = torch.randn(3, 1, 512, 64)  # one second of the `tfsepnet` frontend
    with torch.no_grad():
        ours, theirs = model.eval()(x), reference_forward(state, x)
    assert theirs.abs().max() > 0.1 and torch.allclose(ours.clip_logits, theirs, atol=1e-5)
    c = count(model, *one_second_input(model))
    assert (c.params, c.macs) == (126_858, 29_419_648)


def test_converted_student_passes_complexity_and_export(tmp_path, capsys):
    from earmark.export import export_onnx

    torch.save({"state_dict": {f"backbone.{k}": v for k, v in reference_state(c=32).items()}}, tmp_path / "ref.ckpt")
    assert main(["convert", "--from", "tfsepnet", str(tmp_path / "ref.ckpt"), str(tmp_path / "student")]) == 0
    assert "student tfsepnet32" in capsys.readouterr().out
    assert main(["complexity", str(tmp_path / "student")]) == 0
    assert "34,634" in capsys.readouterr().out  # TF-SepNet-32's published parameter count
    result = export_onnx(tmp_path / "student", tmp_path / "s.onnx")
    assert result.parity.max_abs_diff < 1e-4 and result.parity.top1_agreement == 1.0


def test_a_teacher_file_given_as_tfsepnet_is_named(tmp_path, capsys):
    torch.save({"cfg": {}, "model": {"encoder.layers.0.self_attn.grep_a": torch.ones(1, 4, 1, 1)}}, tmp_path / "beats.pt")
    assert main(["convert", "--from", "tfsepnet", str(tmp_path / "beats.pt"), str(tmp_path / "out")]) == 1
    assert "is not a tfsepnet checkpoint; its keys are those of the beats format" in capsys.readouterr().err


def test_a_reference_file_with_wrong_label_count_is_refused(tmp_path):
    torch.save(reference_state(classes=4), tmp_path / "ref.ckpt")
    with pytest.raises(ValueError, match="has 4 classes but 2 labels were given"):
        convert_tfsepnet(tmp_path / "ref.ckpt", tmp_path / "out", ["a", "b"])


@pytest.mark.slow  # a distillation run (about 30 s on 2 idle cores)
def test_distill_starts_from_a_converted_student(tmp_path):
    from earmark.audio.manifest import read_manifest
    from earmark.audio.synth import synthesize
    from earmark.distill import DistillConfig, distill

    data = synthesize(tmp_path / "data", seed=1, clips_per_class=10, soundscapes=0)
    labels = read_manifest(data.clips_csv).labels.to_list()
    torch.save(reference_state(c=32, classes=len(labels)), tmp_path / "ref.ckpt")
    init, _, _ = convert_tfsepnet(tmp_path / "ref.ckpt", tmp_path / "init", labels)
    config = DistillConfig(data=str(data.clips_csv), out=str(tmp_path / "run"), student="tfsepnet32", init=str(init), epochs=1,
                           batch_size=8, lr=0.0, kd=False, progress=False)
    final, _ = load_model(distill(config), "student")
    start, _ = load_model(init, "student")
    convs = [k for k in start.state_dict() if k.endswith("0.weight") or k == "classifier.weight"]
    assert all(torch.equal(final.state_dict()[k], start.state_dict()[k]) for k in convs)  # lr 0: the converted weights, kept
    other = DistillConfig(data=str(data.clips_csv), out=str(tmp_path / "other"), student="tfsepnet16", init=str(init), progress=False)
    with pytest.raises(ValueError, match=r"--init .* is a tfsepnet32 .* this run trains tfsepnet16 .* or drop --init\.$"):
        distill(other)
