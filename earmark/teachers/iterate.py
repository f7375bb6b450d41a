"""ACM-SSKD's Algorithm A1: alternate self-supervised pretraining and knowledge distillation for K iterations.

Our reading of the algorithm: iteration i (counting from 0)
1. pretrains the audio feature transformer with the ACM-SSKD objective (eq. 10) on unlabelled audio, starting from
   iteration i-1's distilled backbone (iteration 0 from random weights) with a freshly initialised light decoder;
2. distils into it on labelled audio, L = CE(F_cls, F_teacher) + gamma MSE(F_cls, F_teacher) (eqs. 11-13), through a
   freshly initialised linear head on the mean-pooled features, against a teacher-output cache (`earmark predict`);
both stages at 0.8^i times the first iteration's learning rates (the 20% decay per iteration). A finished stage is
never run twice, so the same command continues an interrupted loop.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from earmark.teachers.finetune import FinetuneConfig, finetune
from earmark.teachers.pretrain.run import PretrainConfig, pretrain


def acmsskd_iterations(ssl: PretrainConfig, kd: FinetuneConfig, iterations: int, lr_decay: float = 0.2) -> Path:
    """Run Algorithm A1 under ``ssl.out``; returns the last iteration's distilled teacher checkpoint."""
    if ssl.recipe != "acmsskd":
        raise ValueError(f"iterating pretraining and distillation is ACM-SSKD's Algorithm A1; use --recipe acmsskd, not {ssl.recipe!r}.")
    if not kd.kd_cache:
        raise ValueError("Algorithm A1 distils against a teacher: pass --kd-cache (made by `earmark predict TEACHER --data KD_DATA --out CACHE`).")
    if iterations < 1:
        raise ValueError(f"--iterations must be at least 1, got {iterations}.")
    root, previous, history = Path(ssl.out), ssl.init, []
    for i in range(iterations):
        scale = (1.0 - lr_decay) ** i
        folder = root / f"iteration{i + 1}"
        ssl_i = replace(ssl, out=str(folder / "ssl"), init=previous, lr=ssl.lr * scale)
        pretrained, distilled = folder / "ssl" / "teacher", folder / "kd" / "teacher"  # where pretrain and finetune write
        if not (pretrained / "earmark.json").is_file():
            pretrain(ssl_i, resume=True)
        kd_i = replace(kd, teacher=str(pretrained), out=str(folder / "kd"), lr=kd.lr * scale)
        if not (folder / "kd" / "results.json").is_file():
            finetune(kd_i)
        results = json.loads((folder / "kd" / "results.json").read_text())
        history.append({"iteration": i + 1, "ssl_lr": ssl_i.lr, "kd_lr": kd_i.lr, "init": previous, "test": results["test"]})
        previous = str(distilled)
    (root / "iterations.json").write_text(json.dumps(history, indent=2))
    return Path(previous)
