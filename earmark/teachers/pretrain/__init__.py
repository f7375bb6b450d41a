"""Self-supervised teacher pretraining: ACM-SSKD, ASiT, ATST-Clip/Frame and BEATs-style recipes."""

from earmark.teachers.pretrain.acmsskd import ACMSSKD, info_nce, kd_loss
from earmark.teachers.pretrain.asit import ASiT
from earmark.teachers.pretrain.atst import ATSTClip, ATSTFrame
from earmark.teachers.pretrain.beats import AcousticTokenizer, BEATsIter1, BEATsIterN, RandomProjectionTokenizer
from earmark.teachers.pretrain.masking import block_mask_1d, gmml_mask, hog_prior, intra_patch_mask, random_patch_mask
from earmark.teachers.pretrain.run import RECIPES, PretrainConfig, pretrain

__all__ = [
    "pretrain", "PretrainConfig", "RECIPES", "ACMSSKD", "ASiT", "ATSTClip", "ATSTFrame", "BEATsIter1", "BEATsIterN", "AcousticTokenizer", "RandomProjectionTokenizer",
    "block_mask_1d", "gmml_mask", "hog_prior", "intra_patch_mask", "random_patch_mask", "info_nce", "kd_loss",
]
