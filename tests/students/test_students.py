"""Students match their papers' counts, trace to ONNX with Runtime parity, and round-trip through checkpoints."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from earmark.engine.checkpoint import load_model, save_checkpoint
from earmark.export import ScoresHead
from earmark.students import REGISTRY, count, create_student, format_report, one_second_input, student_checkpoint_meta


@pytest.mark.parametrize("name, params, macs", [
    ("tfsepnet64", 126_858, 29_419_648),
    ("tfsepnet40", 52_290, 7_029_240),
])
def test_published_parameter_and_mac_counts(name, params, macs):
    model = create_student(name, 10)
    c = count(model, *one_second_input(model))
    assert (c.params, c.macs) == (params, macs)


def test_the_25ms_variant_is_tfsepnet40_on_efficientats_frames():
    model = create_student("tfsepnet40_25ms", 10)
    c = count(model, *one_second_input(model))
    assert model.frontend.name == "efficientat" and one_second_input(model) == (128, 100)
    assert (c.params, c.macs) == (52_290, 5_412_240)  # the same weights as tfsepnet40, on 128 x 100 frames


def test_adaresnorm_adds_three_parameters_per_channel_of_each_norm():
    assert count(create_student("tfsepnet40_ada", 10), 256, 64).params == 53_370


def test_complexity_verdicts_for_tfsepnet64():
    c = count(create_student("tfsepnet64", 10), 512, 64)
    assert c.param_bytes("int8") == 126_858 and c.fits("int8")
    assert c.param_bytes("fp16") == 253_716 and not c.fits("fp16")
    report = format_report("tfsepnet64", c)
    assert "126,858" in report and "does not fit" in report and c.frontend_flops > 0


@pytest.mark.parametrize("name", ["tfsepnet64", "vit_micro_audio"])
def test_frame_models_keep_time_at_the_documented_rate(name):
    model = create_student(name, 5, task="frame").eval()
    n_mels, frames = one_second_input(model)
    out = model(torch.randn(2, 1, n_mels, 4 * frames))
    frame_logits, clip_logits = out.frame_logits, out.clip_logits
    assert clip_logits.shape == (2, 5)
    if name.startswith("tfsepnet"):
        assert 0.020 <= model.frame_hop_seconds <= 0.064
    expected = 4 * frames * 500 / 32000 / model.frame_hop_seconds  # four seconds of feature frames
    assert frame_logits.shape[0] == 2 and frame_logits.shape[2] == 5 and abs(frame_logits.shape[1] - expected) <= 1


def test_vit_interpolates_learned_positions_to_other_lengths():
    model = create_student("vit_micro_audio", 3).eval()
    assert model(torch.randn(1, 1, 256, 128)).clip_logits.shape == (1, 3)
    assert create_student("vit_micro_audio", 3, positions="sincos", pooling="cls")(torch.randn(1, 1, 256, 64)).clip_logits.shape == (1, 3)


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("task", ["clip", "frame"])
def test_every_student_exports_to_onnx_with_runtime_parity(name, task, tmp_path):
    model = ScoresHead(create_student(name, 4, task=task), task, "detect").eval()  # ModelOutput -> named outputs
    x = torch.randn(1, 1, *one_second_input(model.model))
    torch.onnx.export(model, (x,), tmp_path / "m.onnx", dynamo=False, opset_version=17, input_names=["features"],
                      output_names=model.output_names)
    ours = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"features": x.numpy()})
    with torch.no_grad():
        ref = model(x)
    for o, r in zip(ours, ref):
        assert np.abs(o - r.numpy()).max() < 1e-4


def test_checkpoint_round_trip_and_wrong_architecture(tmp_path):
    model = create_student("tfsepnet40", 3, base_channels=16)
    meta = student_checkpoint_meta(model, "tfsepnet40", ["a", "b", "c"], overrides={"base_channels": 16})
    save_checkpoint(tmp_path / "s", model.state_dict(), meta)
    loaded, meta2 = load_model(tmp_path / "s", "student")
    x = torch.randn(2, 1, 256, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x).clip_logits, model.eval()(x).clip_logits)
    assert meta2.labels == ["a", "b", "c"]
    meta.model_args["base_channels"] = 24
    save_checkpoint(tmp_path / "bad", model.state_dict(), meta)
    with pytest.raises(ValueError, match="do not fit"):
        load_model(tmp_path / "bad", "student")


def test_vit_checkpoint_from_before_the_shared_block_still_loads(tmp_path):
    """ViT students saved before the block moved to earmark.nn named their MLP ``mlp.0`` / ``mlp.2`` (an nn.Sequential)."""
    model = create_student("vit_micro_audio", 3, task="frame").eval()
    old = {k.replace(".mlp.fc1.", ".mlp.0.").replace(".mlp.fc2.", ".mlp.2."): v for k, v in model.state_dict().items()}
    assert any(".mlp.0." in k for k in old)
    save_checkpoint(tmp_path / "old", old, student_checkpoint_meta(model, "vit_micro_audio", ["a", "b", "c"], "frame"))
    loaded, _ = load_model(tmp_path / "old", "student")
    x = torch.randn(2, 1, 256, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x).frame_logits, model(x).frame_logits)


@pytest.mark.parametrize("norm", ["resnorm", "adaresnorm"])
def test_resnorm_is_one_instance_normalization_in_onnx_with_the_papers_values(norm, tmp_path):
    import onnx
    import onnxruntime as ort

    from earmark.students import AdaResNorm, ResNorm

    torch.manual_seed(0)
    layer = ResNorm(40) if norm == "resnorm" else AdaResNorm(40)
    if norm == "adaresnorm":
        layer.rho.data.uniform_(0, 1), layer.gamma.data.uniform_(0.5, 1.5), layer.beta.data.uniform_(-1, 1)
    x = torch.randn(2, 40, 64, 16) * 3 + 1
    mean, var = x.mean(dim=(1, 3), keepdim=True), x.var(dim=(1, 3), keepdim=True)  # the reference code's unbiased variance
    normalised = (x - mean) / torch.sqrt(var + 1e-5)
    if norm == "resnorm":
        reference = 0.1 * x + normalised
    else:
        rho = layer.rho.clamp(0, 1)
        reference = layer.gamma * (rho * x + (1 - rho) * normalised) + layer.beta
    with torch.no_grad():
        assert (layer(x) - reference).abs().max() <= 1e-5
        torch.onnx.export(layer, (x,), tmp_path / "n.onnx", dynamo=False, opset_version=17, input_names=["x"])
    ops = [n.op_type for n in onnx.load(tmp_path / "n.onnx").graph.node]
    assert ops.count("InstanceNormalization") == 1 and "ReduceMean" not in ops and "Sqrt" not in ops
    out = ort.InferenceSession(str(tmp_path / "n.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    assert np.abs(out - reference.detach().numpy()).max() <= 1e-5


def test_folding_the_channel_shuffles_into_the_transition_convs_keeps_the_function():
    from earmark.students import fold_channel_shuffles
    from earmark.students.tfsepnet import ChannelShuffle, TFSepConvs

    torch.manual_seed(0)
    model = create_student("tfsepnet40", 5).eval()
    for m in model.modules():  # statistics and affine terms the permutation must carry along
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0), m.weight.data.uniform_(-1.5, 1.5), m.bias.data.uniform_(-1, 1)
    folded = fold_channel_shuffles(model)
    blocks = [m for m in folded.modules() if isinstance(m, TFSepConvs)]
    kept = [b for b in blocks if isinstance(b.shuffle, ChannelShuffle)]
    assert 0 < len(kept) < len(blocks) and all(isinstance(b.transition, torch.nn.Identity) for b in kept)
    assert sum(isinstance(m, ChannelShuffle) for m in model.modules()) == len(blocks)  # the original is untouched
    x = torch.randn(2, 1, 256, 64)
    with torch.no_grad():
        assert (folded(x).clip_logits - model(x).clip_logits).abs().max() <= 1e-5


def _randomise_norm_statistics(model):
    for m in model.modules():  # statistics and affine terms a relabelling or a fold must carry along
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0), m.weight.data.uniform_(-1.5, 1.5), m.bias.data.uniform_(-1, 1)
        if hasattr(m, "rho"):
            m.rho.data.uniform_(0, 1), m.gamma.data.uniform_(0.5, 1.5), m.beta.data.uniform_(-1, 1)


class _Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return (out.clip_logits,) if out.frame_logits is None else (out.clip_logits, out.frame_logits)


@pytest.mark.parametrize("norm, task", [("resnorm", "clip"), ("adaresnorm", "frame")])
def test_runtime_layout_computes_the_same_function_in_ops_onnx_runtime_keeps_blocked(norm, task, tmp_path):
    import onnx

    from earmark.students import TFSepNet, runtime_layout
    from earmark.students.tfsepnet import RuntimeTFSepConvs, SplitStemConv, TFSepConvs

    torch.manual_seed(0)
    model = TFSepNet(5, base_channels=32, depth=16, norm=norm, task=task).eval()  # stem 16, halves 16/24/32/40: multiples of 8
    _randomise_norm_statistics(model)
    fast = runtime_layout(model)
    blocks = [m for m in fast.modules() if isinstance(m, TFSepConvs)]
    assert isinstance(fast.stem[-1], SplitStemConv) and all(type(b) is RuntimeTFSepConvs for b in blocks)
    assert not any(isinstance(m, (SplitStemConv, RuntimeTFSepConvs)) for m in model.modules())  # the original is untouched
    x = torch.randn(2, 1, 128, 32) * 2
    with torch.no_grad():
        ours, reference = _Logits(fast)(x), _Logits(model)(x)
        assert max((a - b).abs().max().item() for a, b in zip(ours, reference)) <= 1e-5
        torch.onnx.export(_Logits(fast), (x,), tmp_path / "m.onnx", dynamo=False, opset_version=17, input_names=["x"])
    ops = [n.op_type for n in onnx.load(tmp_path / "m.onnx").graph.node]
    # the block means are average pools and the broadcast adds an exact nearest upsample; no grouped stem conv is left
    assert ops.count("AveragePool") == ops.count("Resize") == 2 * len(blocks) and ops.count("InstanceNormalization") == 5
    groups = [next((a.i for a in n.attribute if a.name == "group"), 1) for n in onnx.load(tmp_path / "m.onnx").graph.node if n.op_type == "Conv"]
    assert groups[:6] == [1, 16, 16, 16, 16, 1]  # the stem's 16 -> 64 grouped conv as four 16-channel depthwise convs
    outs = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
    assert max(np.abs(o - r.numpy()).max() for o, r in zip(outs, reference)) <= 1e-5


def test_runtime_layout_of_tfsepnet40_doubles_its_stem_and_runs_its_odd_halves_depthwise_convs_jointly(tmp_path):
    import onnx

    from earmark.students import runtime_layout
    from earmark.students.tfsepnet import RuntimeTFSepConvs, SplitStemConv

    torch.manual_seed(0)
    model = create_student("tfsepnet40", 5).eval()  # stem 20 (-> 80), halves 20/30/40/50: no pools
    _randomise_norm_statistics(model)
    fast = runtime_layout(model)
    blocks = [m for m in fast.modules() if isinstance(m, RuntimeTFSepConvs)]
    assert len(blocks) == 9 and not any(b.pooled for b in blocks)
    # the stem's first conv computes its 20 channels twice, so its grouped conv splits into two 40-channel depthwise convs
    assert isinstance(fast.stem[-1], SplitStemConv) and fast.stem[0][0].out_channels == 40 and len(fast.stem[-1].convs) == 2
    assert sorted(b.half for b in blocks if b.joint_depthwise is not None) == [30, 30, 50, 50, 50]
    assert sorted(b.half for b in blocks if b.mean_convs) == [20, 20, 40, 40]  # the others' means stay ReduceMean
    joint = next(b.joint_depthwise for b in blocks if b.joint_depthwise is not None)
    assert joint.weight[:30, 0, :, [0, 2]].abs().sum() == 0 and joint.weight[30:, 0, [0, 2], :].abs().sum() == 0
    x = torch.randn(2, 1, 256, 64)
    with torch.no_grad():
        reference = model(x).clip_logits
        assert (fast(x).clip_logits - reference).abs().max() <= 1e-5
        torch.onnx.export(_Logits(fast), (x,), tmp_path / "m.onnx", dynamo=False, opset_version=17, input_names=["x"])
    ops = [n.op_type for n in onnx.load(tmp_path / "m.onnx").graph.node]
    assert ops.count("Resize") == 2 * len(blocks) and "AveragePool" not in ops and ops.count("ReduceMean") == 2 * 5 + 1
    out = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    assert np.abs(out - reference.numpy()).max() <= 1e-5


def test_resnorm_keeps_its_epsilon_on_a_near_constant_input():
    from earmark.students import ResNorm

    torch.manual_seed(0)
    x = 0.01 + 1e-3 * torch.randn(1, 40, 32, 8)  # variance 1e-6, below eps: without eps inside the root the output is 3x larger
    mean, var = x.double().mean(dim=(1, 3), keepdim=True), x.double().var(dim=(1, 3), keepdim=True)
    reference = 0.1 * x.double() + (x.double() - mean) / torch.sqrt(var + 1e-5)
    with torch.no_grad():
        assert (ResNorm(40)(x).double() - reference).abs().max() <= 1e-5
