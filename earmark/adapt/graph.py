"""ONNX surgery for enrolment: a deployed detector's frame embeddings, and the same body with a new head on them.

The embedding is the feature map that the model's classifier (a 1x1 convolution with one output channel per label)
reads, averaged over frequency: one vector per output frame, (batch, frames, channels). That is what the students
(TF-SepNet, clip or frame task) compute their frame logits from, in float and in INT8 Q/DQ graphs alike.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from earmark.audio.metadata import METADATA_KEY, ModelMetadata

EMBEDDING = "adapt_frame_embedding"


WEIGHT_DECODERS = ("DequantizeLinear", "QuantizeLinear", "Cast", "Mul")  # how INT8 graphs turn stored weights into float:
# Q/DQ pairs, DequantizeLinear of int8, or (weight-only scope) int8 Cast then Mul by the scales


def _weight_dims(initializers: dict[str, onnx.TensorProto], producers: dict[str, onnx.NodeProto], name: str) -> list[int] | None:
    """The shape of a weight given as an initializer, directly or through the nodes an INT8 graph decodes it with."""
    for _ in range(len(WEIGHT_DECODERS) + 1):
        if name in initializers:
            return list(initializers[name].dims)
        producer = producers.get(name)
        if producer is None or producer.op_type not in WEIGHT_DECODERS:
            return None
        name = producer.input[0]
    return None


def classifier_input(model: onnx.ModelProto, labels: int) -> str:
    """The tensor the model's last 1x1 classifier convolution (``labels`` output channels) reads: (B, D, F, T)."""
    found = None
    initializers = {t.name: t for t in model.graph.initializer}
    producers = {output: node for node in model.graph.node for output in node.output}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        dims = _weight_dims(initializers, producers, node.input[1])
        if dims is not None and len(dims) == 4 and dims[0] == labels and dims[2:] == [1, 1]:
            found = node.input[0]
    if found is None:
        raise ValueError(f"the model has no 1x1 classifier convolution with {labels} outputs to take embeddings from; "
                         "`earmark adapt` supports the students (TF-SepNet) exported by `earmark export`.")
    return found


def _pruned(model: onnx.ModelProto, outputs: list[onnx.ValueInfoProto], extra: list[onnx.NodeProto],
            initializers: list[onnx.TensorProto]) -> onnx.ModelProto:
    """A copy of ``model`` with ``extra`` nodes and ``initializers`` added, its outputs replaced by ``outputs``, and only
    the nodes and initializers those outputs need."""
    nodes = list(model.graph.node) + extra
    needed, kept = {o.name for o in outputs}, []
    for node in reversed(nodes):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    graph = helper.make_graph(list(reversed(kept)), model.graph.name, list(model.graph.input), outputs,
                              [t for t in list(model.graph.initializer) + initializers if t.name in needed])
    pruned = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="earmark adapt")
    pruned.ir_version = model.ir_version
    return pruned


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _frame_embedding_nodes(model: onnx.ModelProto, feature_map: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """(B, D, F, T) -> mean over F -> (B, T, D) as EMBEDDING (ReduceMean's axes became an input at opset 18)."""
    if _opset(model) >= 18:
        axes = [numpy_helper.from_array(np.array([2], np.int64), "adapt_frequency_axis")]
        mean = helper.make_node("ReduceMean", [feature_map, axes[0].name], ["adapt_mean_f"], keepdims=0)
    else:
        axes = []
        mean = helper.make_node("ReduceMean", [feature_map], ["adapt_mean_f"], axes=[2], keepdims=0)
    return [mean, helper.make_node("Transpose", ["adapt_mean_f"], [EMBEDDING], perm=[0, 2, 1])], axes


def embedding_model(model: onnx.ModelProto, labels: int) -> onnx.ModelProto:
    """The deployed model's body with one output: frame embeddings (B, T', D)."""
    nodes, initializers = _frame_embedding_nodes(model, classifier_input(model, labels))
    output = helper.make_tensor_value_info(EMBEDDING, onnx.TensorProto.FLOAT, ["batch", "frames", "channels"])
    return _pruned(model, [output], nodes, initializers)


def adapted_model(model: onnx.ModelProto, base_labels: int, weight: np.ndarray, bias: np.ndarray,
                  metadata: ModelMetadata) -> onnx.ModelProto:
    """The body with a linear head on its frame embeddings: frame_probs = sigmoid(E W + b) (B, T', C) and clip_probs
    their maximum over frames (B, C); ``metadata`` is attached as the runtime reads it."""
    nodes, initializers = _frame_embedding_nodes(model, classifier_input(model, base_labels))
    initializers += [numpy_helper.from_array(weight.astype(np.float32), "adapt_head_weight"),
                     numpy_helper.from_array(bias.astype(np.float32), "adapt_head_bias")]
    nodes += [helper.make_node("MatMul", [EMBEDDING, "adapt_head_weight"], ["adapt_logits_nobias"]),
              helper.make_node("Add", ["adapt_logits_nobias", "adapt_head_bias"], ["adapt_logits"]),
              helper.make_node("Sigmoid", ["adapt_logits"], [metadata.outputs["frame"]])]
    if _opset(model) >= 18:
        time_axis = numpy_helper.from_array(np.array([1], np.int64), "adapt_time_axis")
        initializers.append(time_axis)
        nodes.append(helper.make_node("ReduceMax", [metadata.outputs["frame"], time_axis.name], [metadata.outputs["clip"]], keepdims=0))
    else:
        nodes.append(helper.make_node("ReduceMax", [metadata.outputs["frame"]], [metadata.outputs["clip"]], axes=[1], keepdims=0))
    shapes = {"frame": ["batch", "frames", len(metadata.labels)], "clip": ["batch", len(metadata.labels)]}
    outputs = [helper.make_tensor_value_info(metadata.outputs[role], onnx.TensorProto.FLOAT, shapes[role]) for role in ("frame", "clip")]
    adapted = _pruned(model, outputs, nodes, initializers)
    onnx.checker.check_model(adapted)
    adapted.metadata_props.add(key=METADATA_KEY, value=metadata.to_json())
    return adapted
