"""The quantized-student format: BatchNorm folded before NNCF, scopes, reload equality, exact INT8 weights in ONNX."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from earmark.engine import load_model
from earmark.export import ScoresHead
from earmark.students import create_student, export_ready, fold_batchnorm, quantize, save_quantized_checkpoint, student_checkpoint_meta


def _student():
    torch.manual_seed(0)
    model = create_student("tfsepnet40", 4, base_channels=16).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0), m.weight.data.uniform_(-1.5, 1.5)
    return model


def test_folding_batchnorm_keeps_the_function_and_removes_every_batchnorm():
    model = _student()
    x = torch.randn(2, 1, 256, 64)
    with torch.no_grad():
        before = model(x).clip_logits
        folded = fold_batchnorm(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert torch.allclose(folded(x).clip_logits, before, atol=1e-4)


@pytest.mark.parametrize("scope", ["all", "pointwise", "weights"])
def test_quantized_student_reloads_exactly_and_exports_int8_weights(tmp_path, scope):
    from earmark.export.qdq import store_int8_weights

    model = _student()
    x = torch.randn(6, 1, 256, 64)
    qmodel = quantize(model, [x[:3], x[3:]], scope)
    save_quantized_checkpoint(tmp_path / "q", qmodel, student_checkpoint_meta(model, "tfsepnet40", list("abcd"), overrides={"base_channels": 16}), scope)
    reloaded, meta = load_model(tmp_path / "q", "student")
    assert meta.extra["quantization"]["scope"] == scope and meta.extra["quantization"]["version"] == 2
    assert meta.extra["quantization"]["spatial_weights"] == (None if scope == "all" else "per-tensor")
    assert (meta.extra["quantization"]["config"] is None) == (scope == "weights")  # weight-only needs no NNCF
    assert meta.extra["quantization"]["format"] == ("int8-symmetric-weight-only" if scope == "weights" else "nncf-int8-symmetric")
    with torch.no_grad():
        assert torch.allclose(reloaded(x[:2]).clip_logits, qmodel(x[:2]).clip_logits, atol=1e-6)
    ready = ScoresHead(export_ready(reloaded, x[:1]), "clip", "classify")  # ModelOutput -> the graph's outputs
    torch.onnx.export(ready, (x[:1],), tmp_path / "q.onnx", dynamo=False, opset_version=17)
    model_proto = onnx.load(tmp_path / "q.onnx")
    floats = ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert store_int8_weights(model_proto) == sum(n.op_type == "Conv" for n in model_proto.graph.node)
    int8 = ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    name = model_proto.graph.input[0].name
    # the INT8 initializers reproduce the fake-quantized float weights exactly, and those QAT's own grid
    assert np.array_equal(int8.run(None, {name: x[:1].numpy()})[0], floats.run(None, {name: x[:1].numpy()})[0])
    dequantized = [n for n in model_proto.graph.node if n.op_type == "DequantizeLinear"]
    inits = {t.name: numpy_helper.to_array(t) for t in model_proto.graph.initializer}
    assert all(inits[n.input[0]].dtype == np.int8 for n in dequantized if n.input[0] in inits)


def test_pointwise_qat_trains_spatial_weights_on_an_int8_grid_and_biases_on_the_float16_grid():
    from earmark.students.quantized import QuantizedStorageConv2d

    model = _student()
    x = torch.randn(4, 1, 256, 64)
    qmodel = quantize(model, [x], "pointwise")
    convs = [m for m in qmodel.modules() if isinstance(m, torch.nn.Conv2d)]
    spatial = [m for m in convs if m.kernel_size != (1, 1)]
    assert spatial and all(isinstance(m, QuantizedStorageConv2d) for m in convs)
    assert {m.spatial_weights for m in spatial} == {"per-tensor"} and {m.spatial_weights for m in convs if m not in spatial} == {None}
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in qmodel.modules())
    qmodel.train()
    qmodel(x[:2]).clip_logits.square().sum().backward()
    for conv in spatial:  # straight-through: the float weight and bias learn although the forward sees grid points
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0 and conv.bias.grad.abs().sum() > 0
        levels = conv.stored_weight().detach() / conv.weight_scale()
        assert torch.allclose(levels, levels.round(), atol=1e-3) and levels.abs().max() <= 127.001
    qmodel.eval()
    with torch.no_grad():
        before = qmodel(x[:2]).clip_logits
        ready = export_ready(qmodel, x[:1])  # bakes the grids into the parameters: the function stays the same
        assert torch.equal(ready(x[:2]).clip_logits, before)
    for conv in convs:
        assert torch.equal(conv.bias, conv.bias.half().float())
    for conv in spatial:
        levels = conv.weight.detach() / conv.weight_scale()
        assert torch.allclose(levels, levels.round(), atol=1e-4)


def test_scope_weights_quantizes_every_conv_weight_and_no_activation():
    from earmark.students.quantized import QuantizedStorageConv2d

    qmodel = quantize(_student(), [torch.randn(2, 1, 256, 64)], "weights")
    convs = [m for m in qmodel.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(isinstance(m, QuantizedStorageConv2d) and m.float16_bias for m in convs)
    assert {m.spatial_weights for m in convs if m.kernel_size == (1, 1)} == {"per-channel"}
    assert {m.spatial_weights for m in convs if m.kernel_size != (1, 1)} == {"per-tensor"}
    assert not [m for m in qmodel.modules() if type(m).__module__.startswith("nncf")]


def test_unknown_scope_and_bare_sequential_are_refused():
    with pytest.raises(ValueError, match="unknown INT8 scope"):
        quantize(_student(), [torch.randn(2, 1, 256, 64)], "depthwise")
    with pytest.raises(ValueError, match="bare nn.Sequential"):
        quantize(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1)), [torch.randn(2, 1, 8, 8)])


@pytest.mark.parametrize("args, joint_blocks", [
    ({}, 5),  # tfsepnet40: a doubled stem, joint depthwise convs (halves 30, 50) and mean convs
    ({"base_channels": 32, "depth": 16, "norm": "adaresnorm", "task": "frame"}, 0),  # halves of 8k: pools, AdaResNorm relabelled
])
def test_runtime_layout_regroups_a_weight_only_student_on_its_int8_grid(args, joint_blocks):
    from earmark.students import TFSepNet, runtime_layout
    from earmark.students.quantized import QuantizedStorageConv2d
    from earmark.students.tfsepnet import RuntimeTFSepConvs, SplitStemConv

    torch.manual_seed(0)
    model = TFSepNet(4, **args).eval() if args else create_student("tfsepnet40", 4).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.bias.data.uniform_(-0.5, 0.5)
        if hasattr(m, "rho"):  # AdaResNorm's per-channel parameters, which the split stem's channel order permutes
            m.rho.data.uniform_(0, 1), m.beta.data.uniform_(-0.5, 0.5)
    x = torch.randn(3, 1, 256, 64)
    quantized = export_ready(quantize(model, [x], "weights"), x)
    fast = runtime_layout(quantized)
    with torch.no_grad():
        ours, reference = fast(x), quantized(x)
        assert (ours.clip_logits - reference.clip_logits).abs().max() <= 1e-5
        assert reference.frame_logits is None or (ours.frame_logits - reference.frame_logits).abs().max() <= 1e-5
    blocks = [m for m in fast.modules() if isinstance(m, RuntimeTFSepConvs)]
    joint = [b for b in blocks if b.joint_depthwise is not None]
    assert len(joint) == joint_blocks and isinstance(fast.stem[-1], SplitStemConv)
    assert all(b.pooled for b in blocks) == (joint_blocks == 0)
    # every conv the export traces holds INT8 levels times its scale: the regrouped ones one scale per output channel
    doubled = fast.stem[0][0].out_channels == 2 * quantized.stem[0][0].out_channels  # tfsepnet40's first conv, computed twice
    regrouped = [*fast.stem[-1].convs, *(b.joint_depthwise for b in joint)] + [fast.stem[0][0]] * doubled
    for conv in [m for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]:
        assert isinstance(conv, QuantizedStorageConv2d) and conv.baked
        scale = conv.weight_scale().reshape(-1, 1, 1, 1)
        levels = conv.weight.detach() / scale
        assert torch.equal(levels.round(), levels.round().clamp(-127, 127)) and torch.allclose(levels, levels.round(), atol=1e-4)
        assert conv not in regrouped or conv.spatial_weights == "per-channel"
    for block in joint:  # freq channels keep the freq conv's scale, time channels the time conv's; the zero taps are INT8 zeros
        conv, h = block.joint_depthwise, block.half
        assert torch.equal(conv.weight_scale(), torch.cat([block.freq_dw[0].channel_scales(), block.time_dw[0].channel_scales()]))
        assert torch.equal(conv.weight[:h, 0, :, 1], block.freq_dw[0].weight[:, 0, :, 0])
        assert conv.weight[:h, 0, :, [0, 2]].abs().sum() == 0 and conv.weight[h:, 0, [0, 2], :].abs().sum() == 0
    if doubled:  # each copy on the same grid
        assert torch.equal(fast.stem[0][0].weight_scale(), quantized.stem[0][0].channel_scales().repeat(2))
