"""earmark.engine: the shared training loop (torchrun/DDP, autocast, accumulation, exact resume), checkpoints, plots.

    config = TrainConfig(run_dir="runs/x", epochs=10, lr=1e-3)
    trainer = Trainer(config, model, step_fn, dataset, collate_fn=collate, val_fn=validate, on_best=save)
    trainer.fit(resume=True)   # step_fn(model, batch) -> (loss, {"metric": value})
"""

from earmark.engine.checkpoint import (CheckpointMeta, checkpoint_hash, load_checkpoint, read_meta, save_checkpoint,
                                       default_objective, load_model, register_family, update_extra)
from earmark.engine.distributed import DistInfo, all_reduce_mean, barrier, cleanup, setup_distributed
from earmark.engine.ema import EMA
from earmark.engine.outputs import OBJECTIVES, ModelOutput, probabilities
from earmark.engine.options import add_config_options, config_from_args
from earmark.engine.metrics import accuracies, average_precision, class_average_precision, class_f1, frame_f1
from earmark.engine.plots import plot_class_scores, plot_confusion, plot_metrics, results_table
from earmark.engine.schedules import SCHEDULES, cosine_to, lr_factor
from earmark.engine.trainer import (TrainConfig, Trainer, TrainState, seed_everything, start_run, default_workers,
                                    progress_interval)
from earmark.engine.official import check_format, first_prefix, safe_load, strip
from earmark.engine.schema import check_arguments, check_output_width

__all__ = [
    "update_extra",
    "default_objective", "load_model", "register_family", "check_format", "first_prefix", "safe_load", "strip", "check_arguments", "check_output_width", "default_workers", "progress_interval",
    "OBJECTIVES", "ModelOutput", "probabilities", "Trainer", "TrainConfig", "add_config_options", "config_from_args", "TrainState", "seed_everything", "start_run", "EMA", "lr_factor", "cosine_to", "SCHEDULES",
    "setup_distributed", "cleanup", "barrier", "all_reduce_mean", "DistInfo",
    "CheckpointMeta", "save_checkpoint", "load_checkpoint", "read_meta", "checkpoint_hash", "plot_metrics", "plot_confusion", "plot_class_scores", "results_table", "accuracies", "average_precision", "frame_f1", "class_f1",
    "class_average_precision",
]
