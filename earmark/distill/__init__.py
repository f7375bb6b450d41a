"""earmark.distill: teacher -> student knowledge distillation and the NNCF quantization-aware training loop (the quantized format is in students)."""

from earmark.distill.losses import bce_kd, frame_kd, soft_kd
from earmark.distill.run import DistillConfig, distill, load_teacher, teacher_cache

__all__ = [
    "DistillConfig", "distill", "load_teacher", "teacher_cache", "soft_kd", "bce_kd", "frame_kd",
]
