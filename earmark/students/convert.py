"""TF-SepNet checkpoints of the reference code (yqcai888/easy_dcase_task1) -> earmark student checkpoints.

The reference names modules ``conv_layers`` (stem), ``middle_layers`` (the depth configuration, one index per
entry) and ``classifier.conv``, each ConvBnRelu as ``_conv`` / ``_bn``; a Lightning checkpoint prefixes them with
``backbone.``. The width comes from the stem, the depth from where the blocks sit, the class count from the
classifier; the registered variant with that width and depth is rebuilt and the tensors renamed onto it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import torch

from earmark.engine.checkpoint import save_checkpoint
from earmark.engine.official import check_format, first_prefix, safe_load, strip
from earmark.students.checkpoint import student_checkpoint_meta
from earmark.students.registry import REGISTRY, create_student
from earmark.students.tfsepnet import DEPTH_CONFIGS

# The reference's scene order (util/static_variable.py), used when a 10-class file comes without --labels.
DCASE_SCENES = ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall", "street_pedestrian",
                "street_traffic", "tram"]
_PREFIXES = ("backbone.", "model.backbone.", "")
_RENAMES = [(r"^conv_layers\.(\d+)\._conv\.", r"stem.\1.0."), (r"^conv_layers\.(\d+)\._bn\.", r"stem.\1.1."),
            (r"^middle_layers\.(\d+)\.trans_conv\._conv\.", r"body.\1.transition.0."),
            (r"^middle_layers\.(\d+)\.trans_conv\._bn\.", r"body.\1.transition.1."),
            (r"^middle_layers\.(\d+)\.freq_dw_conv\._conv\.", r"body.\1.freq_dw.0."), (r"^middle_layers\.(\d+)\.freq_dw_conv\._bn\.", r"body.\1.freq_dw.1."),
            (r"^middle_layers\.(\d+)\.freq_pw_conv\._conv\.", r"body.\1.freq_pw.0."), (r"^middle_layers\.(\d+)\.freq_pw_conv\._bn\.", r"body.\1.freq_pw.1."),
            (r"^middle_layers\.(\d+)\.temp_dw_conv\._conv\.", r"body.\1.time_dw.0."), (r"^middle_layers\.(\d+)\.temp_dw_conv\._bn\.", r"body.\1.time_dw.1."),
            (r"^middle_layers\.(\d+)\.temp_pw_conv\._conv\.", r"body.\1.time_pw.0."), (r"^middle_layers\.(\d+)\.temp_pw_conv\._bn\.", r"body.\1.time_pw.1."),
            (r"^classifier\.conv\.", "classifier.")]
_PROBE = "conv_layers.0._conv.weight"


def looks_like_tfsepnet(ckpt: dict) -> bool:
    """The file holds the reference TF-SepNet's stem (plain or Lightning layout)."""
    return first_prefix(ckpt.get("state_dict", ckpt), _PREFIXES, _PROBE) is not None


def _rename(key: str) -> str:
    for pattern, target in _RENAMES:
        if re.match(pattern, key):
            return re.sub(pattern, target, key)
    raise ValueError(f"holds {key!r}, which the reference TF-SepNet does not have; is it a TF-SepNet checkpoint?")


def _variant(width: int, blocks: set[int]) -> tuple[str, int]:
    for depth, layout in DEPTH_CONFIGS.items():
        if blocks == {i for i, item in enumerate(layout) if not isinstance(item, str)}:
            name = next((n for n, s in REGISTRY.items() if s.builder.__name__ == "TFSepNet" and s.defaults.get("base_channels") == width
                         and s.defaults.get("depth") == depth and s.defaults.get("norm", "resnorm") == "resnorm"), None)
            if name is None:
                raise ValueError(f"is a TF-SepNet of width {width} and depth {depth}, which no registered student has "
                                 f"({', '.join(n for n in REGISTRY if n.startswith('tfsepnet'))}).")
            return name, depth
    raise ValueError(f"has TF-SepConvs blocks at {sorted(blocks)}, which match no depth configuration ({sorted(DEPTH_CONFIGS)}).")


def convert_tfsepnet(src: str | os.PathLike, out: str | os.PathLike, labels: list[str] | None = None,
                     looks_like: dict[str, Callable[[dict], bool]] | None = None) -> tuple[Path, str, list[str]]:
    """Write the reference TF-SepNet at ``src`` as a student checkpoint; returns the folder, the variant and the dropped keys.

    ``looks_like`` (other formats' key tests) names the format of a file that is not a TF-SepNet.
    """
    ckpt = safe_load(src)
    check_format("tfsepnet", ckpt, src, {**(looks_like or {}), "tfsepnet": looks_like_tfsepnet})
    state = ckpt.get("state_dict", ckpt)
    prefix = first_prefix(state, _PREFIXES, _PROBE)
    dropped = [k for k in state if not k.startswith(prefix)]  # the Lightning module's other parts (augmentation, losses)
    try:
        weights = {_rename(k): v for k, v in strip(state, prefix).items()}
        width = weights["stem.0.0.weight"].shape[0] * 2
        name, _ = _variant(width, {int(k.split(".")[1]) for k in weights if k.startswith("body.")})
    except ValueError as err:
        raise ValueError(f"{src}: {err}") from None
    classes = weights["classifier.weight"].shape[0]
    labels = list(labels) if labels else DCASE_SCENES if classes == len(DCASE_SCENES) else [f"class_{i}" for i in range(classes)]
    if len(labels) != classes:
        raise ValueError(f"{src}: has {classes} classes but {len(labels)} labels were given; give one name per class.")
    model = create_student(name, classes)
    expected = model.state_dict()
    missing, wrong = sorted(set(expected) - set(weights)), sorted(k for k in expected if k in weights and weights[k].shape != expected[k].shape)
    if missing or wrong:
        raise ValueError(f"{src}: does not map onto {name}: missing {missing[:8]}, wrong shapes {wrong[:8]}; is the file complete?")
    model.load_state_dict(weights)
    meta = student_checkpoint_meta(model, name, labels)
    meta.provenance = {"converted_from": str(src), "format": "tfsepnet"}
    return save_checkpoint(out, model.state_dict(), meta), name, dropped


CONVERTERS = {"tfsepnet": (convert_tfsepnet, looks_like_tfsepnet, "yqcai888/easy_dcase_task1 TF-SepNet (plain or Lightning backbone.*)")}
