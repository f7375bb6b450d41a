"""earmark: self-supervised audio teachers -> KD + QAT students -> ONNX/TensorRT -> live listening on the edge."""

__version__ = "0.1.0"
