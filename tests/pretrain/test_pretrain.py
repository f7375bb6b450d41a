"""Mask statistics match the papers, every recipe's loss is finite and falls, and a run yields a usable teacher."""

import pytest
import torch

from earmark.audio.synth import synthesize
from earmark.engine import Trainer, load_model
from earmark.teachers.pretrain import (RECIPES, PretrainConfig, block_mask_1d, gmml_mask, hog_prior, intra_patch_mask,
                                       pretrain, random_patch_mask)

TINY = {"atst-frame": ("atst_frame_tiny", dict(hidden=128, out=64)), "atst-clip": ("atst_clip_tiny", dict(hidden=128, out=64)),
        "asit": ("asit_tiny", dict(global_out=256, local_out=128)), "acmsskd": ("acmsskd_tiny", {}), "beats": ("beats_tiny", dict(codes=64))}


def _train(recipe, features, steps: int, lr: float) -> list[dict]:
    """AdamW on the recipe's trainable parameters; each step's loss and metrics."""
    optimizer = torch.optim.AdamW([p for p in recipe.parameters() if p.requires_grad], lr=lr)
    history = []
    for step in range(steps):
        loss, metrics = recipe(features)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        recipe.after_step(step + 1, optimizer)
        history.append({"loss": loss.item(), **metrics})
    return history


def test_atst_frame_block_masks_cover_65_percent_in_blocks_of_5():
    g = torch.Generator().manual_seed(0)
    mask = block_mask_1d(200, 250, 0.65, 5, generator=g)
    assert abs(mask.float().mean().item() - 0.65) < 0.02
    starts = (mask[:, 1:] & ~mask[:, :-1]).sum(1) + mask[:, 0]
    runs = mask.sum(1) / starts
    assert runs.float().mean() >= 5  # masked runs are whole (or merged) blocks


def test_inter_patch_masking_is_75_percent_and_follows_the_hog_prior():
    g = torch.Generator().manual_seed(1)
    patches = torch.randn(1, 64, 16, 16)
    patches[0, :8] *= 0.01  # flat patches: mean gradient far below the others
    prior = hog_prior(patches)
    x = patches[0].diff(dim=-2).abs().mean((-2, -1)) / 2 + patches[0].diff(dim=-1).abs().mean((-2, -1)) / 2
    expected = torch.exp(-((x - x.mean()) ** 2) / x.std() ** 2)  # eq. (1)
    assert torch.allclose(prior[0], expected, atol=1e-5)
    counts = torch.zeros(64)
    for _ in range(300):
        mask = random_patch_mask(1, 64, 0.75, generator=g, weights=prior)
        assert int(mask.sum()) == 48
        counts += mask[0].float()
    assert counts[8:].mean() > counts[:8].mean()  # patches near the mean gradient are chosen more often


def test_intra_patch_masks_follow_the_paper():
    g = torch.Generator().manual_seed(5)
    mask = intra_patch_mask(600, 40, 16, 16, generator=g)  # about 6,000 chosen patches: kind shares within 0.02
    touched = mask.flatten(2).any(-1)
    assert (touched.sum(1) <= 20).all()  # at most 50% of the patches
    chosen = mask[touched]  # (M, 16, 16)
    full_rows, full_cols = chosen.all(-1).sum(-1), chosen.all(-2).sum(-1)  # a frequency band fills rows, a time band columns
    kinds = torch.stack([(full_cols > 0) & (full_rows == 0), (full_rows > 0) & (full_cols == 0), (full_rows > 0) & (full_cols > 0)])
    assert torch.allclose(kinds.float().mean(1), torch.tensor([0.3, 0.3, 0.4]), atol=0.02)
    assert full_rows.max() <= 4 and full_cols.max() <= 4  # each band at most 25% of the patch


def test_gmml_masks_cover_about_70_percent_across_patch_boundaries():
    g = torch.Generator().manual_seed(3)
    mask = gmml_mask(100, 128, 96, generator=g)
    coverage = mask.float().mean((1, 2))
    assert ((coverage >= 0.5) & (coverage <= 0.75)).all() and 0.55 < coverage.mean() < 0.68
    per_patch = mask.reshape(100, 8, 16, 6, 16).float().mean((2, 4))
    assert ((per_patch > 0) & (per_patch < 1)).float().mean() > 0.2  # many patches are partly corrupted


@pytest.mark.parametrize("name", sorted(TINY))  # beats-iter needs a previous teacher: its own test below
def test_each_recipe_loss_is_finite_and_falls(name):
    torch.manual_seed(0)
    teacher, args = TINY[name]
    recipe = RECIPES[name](teacher, total_steps=25, **args)
    spec = recipe.backbone().frontend
    t = torch.linspace(0, 1, spec.num_frames(2 * spec.sample_rate))
    pattern = torch.sin(6.28 * (torch.arange(spec.n_mels)[:, None] / 7.0 + 3 * t[None]))  # structured spectrograms
    features = (pattern + 0.3 * torch.randn(4, 1, spec.n_mels, t.numel()))
    history = _train(recipe, features, steps=25, lr=1e-3)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    watched = "recon" if name == "asit" else "loss"  # DINO-style terms chase a moving teacher; the reconstruction must fall
    first, last = sum(h[watched] for h in history[:3]) / 3, sum(h[watched] for h in history[-3:]) / 3
    assert last < first


class Stop(Exception):
    pass


def test_pretrain_run_writes_a_teacher_that_resumes(tmp_path, monkeypatch):
    data = synthesize(tmp_path / "data", clips_per_class=2, soundscapes=1)
    config = lambda out: PretrainConfig("atst-frame", str(data.clips_csv), str(tmp_path / out), "atst_frame_tiny",
                                        recipe_args=dict(hidden=64, out=32), steps=4, batch_size=4, clip_seconds=1.0, ckpt_every=2,
                                        progress=False)
    uninterrupted, _ = load_model(pretrain(config("full")), "teacher")
    steps, step = [], Trainer._optimizer_step

    def counted(trainer):  # the first run is killed before its third step; the state of step 2 is on disk
        if steps == [1, 2] and not (tmp_path / "run" / "teacher").exists() and trainer.run_dir.parent == tmp_path / "run":
            raise Stop
        step(trainer)
        steps.append(trainer.state.step)

    monkeypatch.setattr(Trainer, "_optimizer_step", counted)
    with pytest.raises(Stop):
        pretrain(config("run"))
    steps.clear()
    path = pretrain(config("run"), resume=True)
    assert steps == [3, 4]  # continued where it stopped, did not start over
    model, meta = load_model(path, "teacher")
    assert meta.model == "atst_frame_tiny" and meta.provenance["pretrained_with"] == "atst-frame"
    for a, b in zip(uninterrupted.state_dict().values(), model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_beats_second_iteration_trains_a_tokenizer_on_the_previous_teacher_then_the_encoder(tmp_path):
    data = synthesize(tmp_path / "data", clips_per_class=2, soundscapes=1)
    first = pretrain(PretrainConfig("beats", str(data.clips_csv), str(tmp_path / "it1"), "beats_tiny", recipe_args=dict(codes=64),
                                    steps=2, batch_size=4, clip_seconds=1.0, progress=False))
    recipe = RECIPES["beats-iter"]("beats_tiny", total_steps=20, previous=str(first), tokenizer_steps=10, codes=64)
    spec = recipe.backbone().frontend
    features = torch.randn(4, 1, spec.n_mels, spec.num_frames(spec.sample_rate))
    history = _train(recipe, features, steps=20, lr=3e-3)
    assert history[9]["teacher_cosine"] > history[0]["teacher_cosine"]  # the tokenizer learns to predict the previous teacher
    assert "accuracy" in history[-1]  # then the encoder predicts the frozen tokenizer's labels
    with pytest.raises(ValueError, match="previous teacher"):
        RECIPES["beats-iter"]("beats_tiny")


def test_pretraining_can_start_from_a_teacher_checkpoint(tmp_path):
    from earmark.engine import save_checkpoint
    from earmark.teachers import create_teacher, teacher_checkpoint_meta

    data = synthesize(tmp_path / "data", clips_per_class=2, soundscapes=1)
    torch.manual_seed(123)
    start = create_teacher("acmsskd_tiny", depth=1)
    init = save_checkpoint(tmp_path / "start", start.state_dict(), teacher_checkpoint_meta(start.frontend, "acmsskd_tiny", {"depth": 1}))
    config = PretrainConfig("acmsskd", str(data.clips_csv), str(tmp_path / "run"), "acmsskd_base", init=str(init), steps=2,
                            batch_size=4, lr=0.0, clip_seconds=1.0, progress=False)  # lr 0: the weights stay where they started
    model, meta = load_model(pretrain(config), "teacher")
    assert meta.model == "acmsskd_tiny" and meta.provenance["init"] == str(init)
    assert all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), model.state_dict().values()))


@pytest.mark.slow  # torchrun launches two interpreters; tests/engine keeps a fast DDP test unmarked
def test_a_two_phase_recipe_trains_under_torchrun_on_two_cpu_ranks(tmp_path):
    import json
    import subprocess
    import sys

    data = synthesize(tmp_path / "data", clips_per_class=2, soundscapes=1)
    first = pretrain(PretrainConfig("beats", str(data.clips_csv), str(tmp_path / "it1"), "beats_tiny", recipe_args=dict(codes=64),
                                    steps=2, batch_size=4, clip_seconds=1.0, progress=False))
    args = json.dumps({"previous": str(first), "tokenizer_steps": 2, "codes": 64})  # the tokenizer phase, then the encoder phase
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29535", "-m", "earmark.cli",
           "pretrain", "beats-iter", "--data", str(data.clips_csv), "--out", str(tmp_path / "it2"), "--teacher", "beats_tiny",
           "--recipe-args", args, "--steps", "4", "--batch-size", "2", "--clip-seconds", "1"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]  # DDP must allow each phase's idle parameters (find_unused)
    model, meta = load_model(tmp_path / "it2" / "teacher", "teacher")
    assert meta.provenance["pretrained_with"] == "beats-iter" and meta.extra["steps"] == 4
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
