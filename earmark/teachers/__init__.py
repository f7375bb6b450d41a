"""earmark.teachers: BEATs, ATST-Clip/Frame, ASiT, SSAST/AST and ACM-SSKD backbones, converters, heads, outputs."""

from earmark.teachers.beats import BEATs, BEATsConfig
from earmark.teachers.checkpoint import build_teacher, teacher_backbone, teacher_checkpoint_meta, teacher_from_checkpoint
from earmark.teachers.heads import HEADS, LayerWiseHead, TeacherClassifier
from earmark.teachers.layers import TeacherOutput
from earmark.teachers.registry import create_teacher, list_teachers
from earmark.teachers.ssl_heads import ASiTProjection, ASiTReconstruction, LightDecoder
from earmark.teachers.vit import ViTConfig, ViTTeacher

__all__ = [
    "create_teacher", "list_teachers", "TeacherOutput", "BEATs", "BEATsConfig", "ViTTeacher", "ViTConfig",
    "TeacherClassifier", "LayerWiseHead", "HEADS", "ASiTProjection", "ASiTReconstruction", "LightDecoder",
    "teacher_checkpoint_meta", "teacher_from_checkpoint", "teacher_backbone", "build_teacher",
]
