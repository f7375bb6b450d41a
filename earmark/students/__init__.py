"""earmark.students: TF-SepNet and small ViT students, frame-level heads, DCASE complexity accounting."""

from earmark.engine.checkpoint import register_family
from earmark.students.checkpoint import LABEL_LAYERS, build_student, student_checkpoint_meta, student_for_labels
from earmark.students.complexity import (MAX_MACS, MAX_PARAM_BYTES, Complexity, count, format_onnx_report, format_report, frontend_flops,
                                         one_second_input, stored_bytes)
from earmark.students.quantized import (
    SCOPES, build_quantized_student, cpu_default_scope, export_ready, fold_batchnorm, quantize, save_quantized_checkpoint,
)
from earmark.students.registry import REGISTRY, create_student, is_causal, list_students
from earmark.students.tfsepnet import AdaResNorm, ResNorm, TFSepNet, fold_channel_shuffles, runtime_layout
from earmark.students.vit import AudioViT

register_family("student", build_student, "`earmark distill`", build_quantized_student)  # how engine.load_model rebuilds students

__all__ = [
    "create_student", "is_causal", "list_students", "REGISTRY", "TFSepNet", "AudioViT", "ResNorm", "AdaResNorm", "fold_channel_shuffles", "runtime_layout",
    "count", "Complexity", "format_report", "frontend_flops", "one_second_input", "MAX_MACS", "MAX_PARAM_BYTES",
    "student_checkpoint_meta", "build_student", "student_for_labels", "LABEL_LAYERS",
    "quantize", "save_quantized_checkpoint", "build_quantized_student", "export_ready", "fold_batchnorm", "SCOPES", "cpu_default_scope",
    "stored_bytes", "format_onnx_report",
]
