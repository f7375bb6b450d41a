"""earmark.engine: the shared training loop (torchrun/DDP, autocast, accumulation, exact resume), checkpoints, plots.

    config = TrainConfig(run_dir="runs/x", epochs=10, lr=1e-3)
    trainer = Trainer(config, model, step_fn, dataset, collate_fn=collate, val_fn=validate, on_best=save)
    trainer.fit(resume=True)   # step_fn(model, batch) -> (loss, {"metric": value})

Names are imported from their modules on first use: the metrics, plots and options need no torch (`earmark eval`
and the verbs' option parsing run in an edge install).
"""

from earmark import lazy_namespace

__all__, __getattr__ = lazy_namespace(__name__, {
    "earmark.engine.checkpoint": ["CheckpointMeta", "checkpoint_hash", "load_checkpoint", "read_meta", "save_checkpoint",
                                  "default_objective", "load_model", "register_family", "update_extra"],
    "earmark.engine.distributed": ["DistInfo", "all_reduce_mean", "barrier", "cleanup", "setup_distributed"],
    "earmark.engine.ema": ["EMA"],
    "earmark.engine.outputs": ["OBJECTIVES", "ModelOutput", "probabilities"],
    "earmark.engine.options": ["add_config_options", "config_from_args"],
    "earmark.engine.metrics": ["accuracies", "average_precision", "class_average_precision", "class_f1", "frame_f1"],
    "earmark.engine.plots": ["plot_class_scores", "plot_confusion", "plot_metrics", "results_table"],
    "earmark.engine.schedules": ["SCHEDULES", "cosine_to", "lr_factor"],
    "earmark.engine.trainer": ["TrainConfig", "Trainer", "TrainState", "seed_everything", "start_run", "default_workers",
                               "progress_interval"],
    "earmark.engine.official": ["check_format", "first_prefix", "safe_load", "strip"],
    "earmark.engine.schema": ["check_arguments", "check_output_width"],
})
