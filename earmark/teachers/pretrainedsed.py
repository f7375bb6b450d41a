"""What PretrainedSED's checkpoints (fschmid56/PretrainedSED, Schmid et al., ICASSP 2025) share across its families.

A file holds the state of its ``PredictionsWrapper``: the backbone under ``model.<wrapper attribute>.`` (the
release names some differently, which each family module knows), a strong head ``strong_head`` (one logit per
class and step, 447 AudioSet-strong classes) and a weak head ``weak_head`` (on the mean step). The wrapper brings
whatever sequence its backbone gives to 250 steps, 40 ms each over the 10-s clips it was trained on. SSL and weak
files hold no strong head and convert to a plain backbone. Each family reads its backbone and calls ``with_heads``.
"""

from __future__ import annotations

from importlib import resources

import torch

from earmark.teachers.convert import Mapped

STEPS = 250  # PredictionsWrapper's seq_len
HEADS = ("strong_head.", "weak_head.")
SEQUENCE_MODEL = "seq_model."


def strong_labels() -> list[str]:
    """The 447 AudioSet-strong training classes in PretrainedSED's order (sorted names; data_util/audioset_classes.py)."""
    return resources.files("earmark.teachers").joinpath("audioset_strong_447.txt").read_text().splitlines()


def split_wrapper(ckpt: dict, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """The backbone's tensors (``prefix`` stripped), the heads' tensors, and every other key (reported as dropped)."""
    if any(k.startswith(SEQUENCE_MODEL) for k in ckpt):
        raise ValueError("holds a sequence model on the transformer (seq_model.*, PretrainedSED's teacher RNN), which earmark "
                         "does not implement; convert one of its released files (e.g. *_strong_1.pt), which hold none.")
    backbone = {k[len(prefix):]: v for k, v in ckpt.items() if k.startswith(prefix)}
    heads = {k: v for k, v in ckpt.items() if k.startswith(HEADS)}
    return backbone, heads, sorted(set(ckpt) - set(heads) - {prefix + k for k in backbone})


def with_heads(mapped: Mapped, heads: dict[str, torch.Tensor], sequence: str) -> Mapped:
    """``mapped`` (a backbone) with the strong head as frame logits over ``STEPS`` steps and the weak head as clip logits.

    ``sequence`` names what the family's wrapper hands the heads (``heads.SEQUENCES``). A weak head of another width
    than the strong one (AudioSet's 527 weak classes) is dropped and reported; the teacher then gives frame logits only.
    """
    if "strong_head.weight" not in heads:
        mapped.dropped += sorted(heads)
        return mapped
    classes = heads["strong_head.weight"].shape[0]
    state = {f"backbone.{k}": v for k, v in mapped.state.items()}
    state["frame_head.weight"], state["frame_head.bias"] = heads["strong_head.weight"], heads["strong_head.bias"]
    clip_head = heads.get("weak_head.weight") is not None and heads["weak_head.weight"].shape[0] == classes
    if clip_head:
        state["head.weight"], state["head.bias"] = heads["weak_head.weight"], heads["weak_head.bias"]
    else:
        mapped.dropped += sorted(k for k in heads if k.startswith("weak_head."))
    names = strong_labels()
    labels = names if classes == len(names) else [f"class_{i}" for i in range(classes)]
    mapped.state, mapped.labels, mapped.head, mapped.objective, mapped.task = state, labels, "sequence", "detect", "frame"
    mapped.head_options = {"steps": STEPS, "sequence": sequence, "clip_head": clip_head}
    return mapped
