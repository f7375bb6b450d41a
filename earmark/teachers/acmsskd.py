"""ACM-SSKD's audio feature transformer (Gong et al., Electronics 2024): the whole family.

A ViT-B over 16x16 (time, mel) patches, no special tokens, mean pooling, plus the 768 -> 1536 -> 768 MLP
on the last layer. No reference code or checkpoint is public, so there is no converter; input of another
length resizes the position grid (``resize``).
"""

from __future__ import annotations

from earmark.teachers.registry import TeacherFamily, build_config, register
from earmark.teachers.vit import ViTConfig, ViTTeacher

_ACMSSKD = dict(layout="time_major", n_mels=128, frames=1024, tokens=0, pool="mean", extra_mlp=True, frontend="ast", length="resize")

register(TeacherFamily(
    "acmsskd", lambda args: ViTTeacher(build_config(ViTConfig, args)),
    variants={"acmsskd_base": dict(_ACMSSKD), "acmsskd_tiny": dict(_ACMSSKD, dim=64, depth=2, heads=4)},
))
