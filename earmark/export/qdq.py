"""ONNX graph rewrites at export: weights stored as INT8 initializers behind a DequantizeLinear, compact files."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def quantize_linear(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int) -> np.ndarray:
    """ONNX QuantizeLinear on a constant: ``saturate(round_half_even(x / scale) + zero_point)`` along ``axis``."""
    shape = [1] * x.ndim
    if scale.ndim:
        shape[axis] = -1
    levels = np.rint(x / scale.reshape(shape)) + zero_point.reshape(shape).astype(np.float64)
    info = np.iinfo(zero_point.dtype)
    return np.clip(levels, info.min, info.max).astype(zero_point.dtype)


def store_int8_weights(model: onnx.ModelProto) -> int:
    """Replace every QuantizeLinear of a constant (a fake-quantized weight) by its INT8 result; returns how many.

    The float weight, its QuantizeLinear and the float initializer go; the DequantizeLinear after them reads
    the INT8 initializer instead, so the file stores one byte per weight and the graph computes the same values.
    """
    graph = model.graph
    constants = _constants(graph)
    users = Counter(name for node in graph.node for name in node.input)
    folded, drop = [], set()
    for index, node in enumerate(graph.node):
        if node.op_type != "QuantizeLinear" or node.input[0] not in constants or len(node.input) < 3:
            continue
        if node.input[1] not in constants or node.input[2] not in constants:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        weights = constants[node.input[0]]
        levels = quantize_linear(weights, constants[node.input[1]], constants[node.input[2]], axis if axis >= 0 else axis + weights.ndim)
        folded.append(numpy_helper.from_array(levels, node.output[0]))
        drop.add(index)
        for name in node.input:
            users[name] -= 1
    kept = [n for i, n in enumerate(graph.node) if i not in drop]
    unused = {name for name, count in users.items() if count <= 0}
    del graph.node[:]
    graph.node.extend(n for n in kept if not (n.op_type == "Constant" and n.output[0] in unused))
    remaining = [t for t in graph.initializer if t.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(remaining + folded)
    return len(folded)


UNIFORM_MIN_ELEMENTS = 16  # below this the Expand node and its shape cost more bytes than the values


def store_uniform_constants(model: onnx.ModelProto) -> int:
    """Store each float32 initializer whose elements are all one value as that value expanded to its shape; returns how many.

    Exact, and ONNX Runtime folds the Expand into a constant when the session starts (convs reading one keep their blocked
    layout). What it catches: ``runtime_layout``'s mean kernels (weights 1/n), InstanceNormalization's constant scale and
    zero bias, per-channel weight scales that are one per-tensor scale repeated. A CPU-file pass: TensorRT's parser
    wants conv weights as initializers.
    """
    graph = model.graph
    added, expands = [], []

    def expanded(tensor: onnx.TensorProto, name: str) -> bool:
        values = numpy_helper.to_array(tensor)
        if tensor.data_type != onnx.TensorProto.FLOAT or values.size < UNIFORM_MIN_ELEMENTS or (values != values.flat[0]).any():
            return False
        added.extend([numpy_helper.from_array(np.array(values.flat[0], np.float32), name + "_value"),
                       numpy_helper.from_array(np.array(values.shape, np.int64), name + "_shape")])
        expands.append(onnx.helper.make_node("Expand", [name + "_value", name + "_shape"], [name]))
        return True

    kept = [t for t in graph.initializer if not expanded(t, t.name)]
    nodes = [n for n in graph.node if not (n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
                                           and expanded(n.attribute[0].t, n.output[0]))]
    del graph.initializer[:]
    graph.initializer.extend(kept + added)
    del graph.node[:]
    graph.node.extend(expands + nodes)  # stays topologically sorted: the expands read initializers only
    return len(expands)


FLOAT16_MIN_ELEMENTS = 16  # below this the Cast node costs more bytes than half precision saves


def store_float16_exact(model: onnx.ModelProto) -> int:
    """Store the float32 vectors whose values are all float16 numbers as float16, packed into one initializer behind one
    Cast and one Split; returns how many.

    Exact by construction (QAT trains the biases on the float16 grid): the Cast restores the very float32 values, and
    ONNX Runtime folds both nodes into constants when the session starts. Packing saves a node and an initializer
    header per bias (about 40 bytes each).
    """
    graph = model.graph
    packed, kept = [], []
    for tensor in graph.initializer:
        values = numpy_helper.to_array(tensor)
        half = values.astype(np.float16)
        if tensor.data_type == onnx.TensorProto.FLOAT and values.ndim == 1 and values.size >= FLOAT16_MIN_ELEMENTS and \
                np.array_equal(half.astype(np.float32), values) and np.isfinite(half).all():
            packed.append((tensor.name, half))
        else:
            kept.append(tensor)
    if not packed:
        return 0
    names = [name for name, _ in packed]
    kept.append(numpy_helper.from_array(np.concatenate([h for _, h in packed]), "float16_vectors"))
    casts = [onnx.helper.make_node("Cast", ["float16_vectors"], ["float16_vectors_f32" if len(packed) > 1 else names[0]], to=onnx.TensorProto.FLOAT)]
    if len(packed) > 1:
        kept.append(numpy_helper.from_array(np.array([h.size for _, h in packed], np.int64), "float16_vector_sizes"))
        casts.append(onnx.helper.make_node("Split", ["float16_vectors_f32", "float16_vector_sizes"], names, axis=0))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)  # stays topologically sorted: the casts read initializers only
    del graph.node[:]
    graph.node.extend(nodes)
    return len(packed)


def dequantize_weight_only(model: onnx.ModelProto) -> int:
    """Rewrite the DequantizeLinear of each INT8 weight whose conv reads a float input (weight-only INT8) as
    ``Cast(int8 -> float) * scale``; returns how many.

    The same float32 products (zero points are 0), but ONNX Runtime folds a Cast and a Mul of constants when the session
    starts, while it keeps every DequantizeLinear for QDQ fusion and so would dequantize these weights on every call and
    leave their convs out of its NCHWc layout. Convs whose input is dequantized keep their weight's DequantizeLinear: that
    is the INT8 Q/DQ pattern other runtimes fuse.
    """
    graph = model.graph
    constants = _constants(graph)
    producers = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    nodes, added, rewritten = [], [], 0
    for node in graph.node:
        weight = constants.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        users = readers.get(node.output[0], []) if weight is not None else []
        zero = constants.get(node.input[2]) if len(node.input) > 2 else None
        if weight is None or weight.dtype != np.int8 or zero is None or zero.any() or node.input[1] not in constants \
                or not users or any(u.op_type != "Conv" or u.input[1] != node.output[0] or _dequantized(u.input[0], producers) for u in users):
            nodes.append(node)
            continue
        scale, scale_name = constants[node.input[1]], node.input[1]
        if scale.ndim:  # per channel: shaped to broadcast along the weight's axis
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % weight.ndim
            shape = [1] * weight.ndim
            shape[axis] = -1
            scale_name = node.output[0] + "_scale"
            added.append(numpy_helper.from_array(scale.reshape(shape), scale_name))
        nodes += _cast_times_scale(node.input[0], scale_name, node.output[0])
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    return rewritten


MOVES = {"Reshape", "Transpose", "Slice", "Split", "Squeeze", "Unsqueeze", "Flatten", "Identity", "MaxPool", "Concat"}


def _cast_times_scale(int8: str, scale: str, out: str) -> list[onnx.NodeProto]:
    """``out = Cast(int8 -> float) * scale``: a weight-only INT8 weight as ONNX Runtime folds it at load."""
    return [onnx.helper.make_node("Cast", [int8], [out + "_float"], to=onnx.TensorProto.FLOAT),
            onnx.helper.make_node("Mul", [out + "_float", scale], [out])]


def store_float_conv_weights_int8(model: onnx.ModelProto) -> int:
    """Store the float32 weight of every Conv that has one as symmetric INT8 levels with one scale per output channel
    (``max |w| / 127``) behind ``Cast * scale``, which ONNX Runtime folds back into a float weight at load: the convs a
    post-training integer file leaves float cost a quarter of their bytes and compute as before on rounded weights.
    Returns how many."""
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    nodes, rewritten = [], 0
    for node in graph.node:
        weight = initializers.get(node.input[1]) if node.op_type == "Conv" else None
        if weight is None or weight.data_type != onnx.TensorProto.FLOAT:
            nodes.append(node)
            continue
        values = numpy_helper.to_array(weight)
        scale = (np.abs(values).reshape(len(values), -1).max(axis=1) / 127).clip(np.finfo(np.float32).tiny).astype(np.float32)
        levels = quantize_linear(values, scale, np.zeros(len(scale), np.int8), axis=0)
        stored = f"{node.input[1]}_{rewritten}_int8"
        graph.initializer.extend([numpy_helper.from_array(levels, stored),
                                  numpy_helper.from_array(scale.reshape(-1, *[1] * (values.ndim - 1)), stored + "_scale")])
        nodes += _cast_times_scale(stored, stored + "_scale", stored + "_weight")
        node.input[1] = stored + "_weight"
        nodes.append(node)
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def _dequantized(name: str, producers: dict[str, onnx.NodeProto]) -> bool:
    """Whether a tensor comes from a DequantizeLinear, through ops that only move or select values (QDQ propagation)."""
    node = producers.get(name)
    while node is not None and node.op_type in MOVES:
        node = producers.get(node.input[0])
    return node is not None and node.op_type == "DequantizeLinear"


def conv_precisions(model: onnx.ModelProto) -> dict[str, int]:
    """How many Conv nodes read INT8 weights (through a DequantizeLinear, or a Cast and Mul when weight-only), how many
    of those read a float input (weight-only INT8: the spatial convs of scope pointwise), and how many stay float."""
    producers = {o: n for n in model.graph.node for o in n.output}
    int8_initializers = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8}

    def int8_weight(name: str) -> bool:
        node = producers.get(name)
        if node is not None and node.op_type == "Mul":
            node = producers.get(node.input[0])
            return node is not None and node.op_type == "Cast" and node.input[0] in int8_initializers
        return node is not None and node.op_type == "DequantizeLinear"

    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    int8 = [n for n in convs if int8_weight(n.input[1])]
    weight_only = sum(not _dequantized(n.input[0], producers) for n in int8)
    return {"int8_convs": len(int8), "weight_only_convs": weight_only, "float_convs": len(convs) - len(int8)}


def compact(model: onnx.ModelProto) -> None:
    """Shrink the file without changing what it computes: constants become deduplicated initializers, Identity
    nodes go, and node names go and inner tensors get short names (the tracer's path-like names outweigh INT8 weights)."""
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    tensors = list(graph.initializer)
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            tensors.append(tensor)
    used = {name for node in graph.node for name in node.input} | keep
    tensors = [t for t in tensors if t.name in used]  # constants no node reads (left by rewrites)
    alias, unique = {}, {}
    for tensor in tensors:
        key = (tensor.data_type, tuple(tensor.dims), numpy_helper.to_array(tensor).tobytes())
        alias[tensor.name] = unique.setdefault(key, tensor).name
    nodes = [n for n in graph.node if not (n.op_type == "Constant" and (n.output[0] in alias or n.output[0] not in used))]
    for node in nodes:
        if node.op_type == "Identity" and node.output[0] not in keep:
            alias[node.output[0]] = alias.get(node.input[0], node.input[0])
    nodes = [n for n in nodes if not (n.op_type == "Identity" and n.output[0] in alias)]
    short: dict[str, str] = {}

    def rename(name: str) -> str:
        name = alias.get(name, name)
        if not name or name in keep:
            return name
        return short.setdefault(name, _short_name(len(short)))

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), onnx.defs.onnx_opset_version())
    for node in nodes:
        node.ClearField("name")  # optional in ONNX; runtimes name nodes themselves
        _drop_default_attributes(node, opset)
        node.input[:] = [rename(i) for i in node.input]
        node.output[:] = [rename(o) for o in node.output]
    initializers = []
    for tensor in unique.values():
        tensor.name = rename(tensor.name)
        initializers.append(tensor)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.value_info[:]


NAME_CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _short_name(index: int) -> str:
    """``_0`` ... ``_Z``, ``_10`` ...: 2-3 characters for the ~1000 tensor references of a student graph."""
    digits = ""
    while True:
        index, digit = divmod(index, len(NAME_CHARS))
        digits = NAME_CHARS[digit] + digits
        if index == 0:
            return "_" + digits


UNIT_LISTS = {"strides": 1, "dilations": 1, "pads": 0}  # list attributes whose ONNX default is "all ones" ("all zeros" for pads)


def _drop_default_attributes(node: onnx.NodeProto, opset: int) -> None:
    """Remove attributes that restate the operator's default (group=1, axis=1, keepdims=1, unit strides, zero pads)."""
    if node.domain not in ("", "ai.onnx"):
        return
    schema = onnx.defs.get_schema(node.op_type, opset)
    kept = []
    for attribute in node.attribute:
        default = schema.attributes[attribute.name].default_value if attribute.name in schema.attributes else None
        restated = default is not None and default.type == attribute.type and default.type != onnx.AttributeProto.UNDEFINED and \
            onnx.helper.get_attribute_value(default) == onnx.helper.get_attribute_value(attribute)
        unit = attribute.name in UNIT_LISTS and "kernel_shape" in [a.name for a in node.attribute] and \
            all(v == UNIT_LISTS[attribute.name] for v in attribute.ints)
        if not (restated or unit):
            kept.append(attribute)
    del node.attribute[:]
    node.attribute.extend(kept)
