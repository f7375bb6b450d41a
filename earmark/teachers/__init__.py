"""earmark.teachers: BEATs, ATST-Clip/Frame, ASiT, SSAST/AST and ACM-SSKD families (one module each), heads, outputs."""

from earmark.teachers.beats import BEATs, BEATsConfig
from earmark.engine.checkpoint import register_family
from earmark.teachers.checkpoint import build_teacher, teacher_backbone, teacher_checkpoint_meta
from earmark.teachers.heads import HEADS, LayerWiseHead, TeacherClassifier
from earmark.teachers.registry import Converter, TeacherFamily, converters, create_teacher, length_policy, list_teachers, register
from earmark.teachers.ssl_heads import ASiTProjection, ASiTReconstruction, LightDecoder
from earmark.teachers.vit import ViTConfig, ViTTeacher
from earmark.teachers.cache import TeacherCache, check_labels
from earmark.teachers.predict import Predictor, ensemble_key, predict_to_cache

register_family("teacher", build_teacher, "`earmark convert`, `earmark pretrain` or `earmark finetune`")  # how engine.load_model rebuilds teachers

__all__ = [
    "TeacherCache", "check_labels", "Predictor", "ensemble_key", "predict_to_cache",
    "create_teacher", "list_teachers", "register", "TeacherFamily", "Converter", "converters", "length_policy", "BEATs", "BEATsConfig", "ViTTeacher", "ViTConfig",
    "TeacherClassifier", "LayerWiseHead", "HEADS", "ASiTProjection", "ASiTReconstruction", "LightDecoder",
    "teacher_checkpoint_meta", "teacher_backbone", "build_teacher",
]
