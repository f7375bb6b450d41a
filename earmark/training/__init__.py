"""earmark.training: the recipe fine-tuning and distillation share, on a floor of its own beside audio, engine and nn.

Augmentations (``augment``), the objective with its label loss and the evaluation loop (``recipe``), and the data
splits by fold with their mixtures and tuning soundscapes (``splits``). It knows no model family: teachers and
distill build their runs from it.
"""

from earmark.training.augment import Augmentation, Augmented, Augmenter, ImpulseResponses, Mix, draw_mix, freq_mixstyle, spec_augment, time_roll
from earmark.training.recipe import Outputs, best_metric, collect_outputs, frame_loss, label_loss, metrics, resolve_objective
from earmark.training.splits import Splits, fold_backgrounds, make_splits, tuning_soundscapes, validation_soundscapes

__all__ = [
    "Augmentation", "Augmented", "Augmenter", "ImpulseResponses", "Mix", "draw_mix", "freq_mixstyle", "spec_augment", "time_roll",
    "Outputs", "best_metric", "collect_outputs", "frame_loss", "label_loss", "metrics", "resolve_objective",
    "Splits", "fold_backgrounds", "make_splits", "tuning_soundscapes", "validation_soundscapes",
]
