"""`earmark pretrain RECIPE`: a recipe on the shared engine (one CPU, one GPU, or torchrun), saved as a teacher checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from earmark.audio.datasets_torch import collate
from earmark.audio.features_torch import Frontend
from earmark.audio.sources import data_identity, open_data, train_dataset
from earmark.engine import Trainer, TrainConfig, plot_metrics, save_checkpoint, setup_distributed, start_run
from earmark.teachers.checkpoint import teacher_backbone, teacher_checkpoint_meta
from earmark.teachers.pretrain.acmsskd import ACMSSKD
from earmark.teachers.pretrain.asit import ASiT
from earmark.teachers.pretrain.atst import ATSTClip, ATSTFrame
from earmark.teachers.pretrain.beats import BEATsIter1, BEATsIterN

RECIPES = {"acmsskd": ACMSSKD, "asit": ASiT, "atst-clip": ATSTClip, "atst-frame": ATSTFrame, "beats": BEATsIter1,
           "beats-iter": BEATsIterN}
DEFAULT_TEACHER = {"acmsskd": "acmsskd_base", "asit": "asit_base", "atst-clip": "atst_clip_base", "atst-frame": "atst_frame_base", "beats": "beats_base",
                   "beats-iter": "beats_base"}


@dataclass
class PretrainConfig:
    """One pretraining run; saved as config.json in the run folder."""

    recipe: str
    data: str
    out: str
    teacher: str = ""  # registry name; default: the recipe's base model
    overrides: dict = field(default_factory=dict)
    recipe_args: dict = field(default_factory=dict)
    init: str = ""  # a teacher checkpoint folder to start from (its model replaces teacher/overrides)
    steps: int = 1000
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.04
    warmup_steps: int = 0
    clip_seconds: float = 10.0
    precision: str = "fp32"
    grad_accum: int = 1
    ckpt_every: int = 100
    seed: int = 0
    workers: int = 0  # DataLoader workers decoding audio
    skip_bad: bool = False  # leave out files that do not decode to finite audio (each named, listed in OUT/skipped.txt)
    progress: bool = True


def pretrain(config: PretrainConfig, resume: bool = False, force: bool = False) -> Path:
    """Run the recipe; returns the teacher checkpoint folder (``OUT/teacher``); ``force`` replaces another run in OUT."""
    if config.recipe not in RECIPES:
        raise ValueError(f"unknown recipe {config.recipe!r}; choose one of {sorted(RECIPES)}.")
    data = open_data(config.data, skip_bad=config.skip_bad)
    out = start_run(config, data_identity(data), force, data.skipped)  # the model's initial weights are part of the run's seed
    teacher, overrides = config.teacher or DEFAULT_TEACHER[config.recipe], config.overrides
    start = None
    if config.init:
        start, teacher, overrides = teacher_backbone(config.init)
    recipe = RECIPES[config.recipe](teacher, overrides, total_steps=config.steps, **config.recipe_args)
    if start is not None:
        recipe.backbone().load_state_dict(start.state_dict())
    info = setup_distributed()
    spec = recipe.backbone().frontend
    frontend = Frontend(spec).to(info.device)
    data = train_dataset(data, spec.sample_rate, config.clip_seconds, config.batch_size, config.seed)

    def step(model, batch):
        return model(frontend(batch["wave"]).unsqueeze(1))

    train_config = TrainConfig(run_dir=str(out / "run"), max_steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                               weight_decay=config.weight_decay, warmup_steps=config.warmup_steps, precision=config.precision,
                               grad_accum=config.grad_accum, ckpt_every=config.ckpt_every, seed=config.seed, progress=config.progress,
                               num_workers=config.workers,
                               find_unused=getattr(recipe, "find_unused", False))
    trainer = Trainer(train_config, recipe, step, data, collate_fn=collate, dist_info=info,
                      hooks=[lambda t: recipe.after_step(t.state.step, t.optimizer)])
    trainer.fit(resume=resume)
    plot_metrics(out / "run")
    meta = teacher_checkpoint_meta(spec, teacher, overrides, recipe=config.recipe, steps=config.steps)
    meta.provenance = {"pretrained_with": config.recipe, "data": config.data, "steps": config.steps, "init": config.init}
    return save_checkpoint(out / "teacher", recipe.backbone().state_dict(), meta)
