"""Enrolment's graph surgery finds a student's classifier in every file `earmark export` writes: fp32, Q/DQ INT8, and
weight-only INT8 (int8 weights behind Cast and Mul, the CPU default scope), and cuts the same embeddings from each."""

import numpy as np
import onnx

from earmark.adapt.graph import classifier_input, embedding_model
from earmark.export.qdq import store_float_conv_weights_int8

from .test_adapt import enrolment  # noqa: F401 (the fixture)


def _embeddings(model: onnx.ModelProto, features: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(embedding_model(model, 2).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: features})[0]


def test_weight_only_int8_files_give_the_embeddings_of_their_float_twin(enrolment):  # noqa: F811
    _, base, _ = enrolment
    fp32 = onnx.load(str(base))
    weight_only = onnx.load(str(base))
    assert store_float_conv_weights_int8(weight_only) > 0
    assert classifier_input(weight_only, 2) == classifier_input(fp32, 2)
    shape = [d.dim_value or 1 for d in fp32.graph.input[0].type.tensor_type.shape.dim]
    features = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    float_embeddings, int8_embeddings = _embeddings(fp32, features), _embeddings(weight_only, features)
    assert float_embeddings.shape == int8_embeddings.shape and float_embeddings.shape[-1] > 2
    assert np.abs(int8_embeddings - float_embeddings).max() < 0.05 * np.abs(float_embeddings).max()  # INT8-rounded weights
