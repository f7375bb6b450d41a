"""Third-party checkpoints (.pt / .ckpt / .pth pickles) read without unpickling arbitrary objects.

``torch.load(weights_only=True)`` with a small allow-list; every way a file can fail becomes one sentence:
missing, holding a pickled call to a blocked function (code: named, and nothing ran), holding a pickled object
outside the allow-list (named), or corrupt / truncated. The stages that
convert official checkpoints (teachers, students) share these helpers; they know no model.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from pathlib import Path
from typing import Callable

import torch

SAFE_GLOBALS = [argparse.Namespace]  # ASiT stores its argparse namespace beside the weights


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The file's tensors and plain values; a pickled call, a refused global or a damaged file is one clear error."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file.")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        call = re.search(r"unsupported GLOBAL ([\w.]+) whose module [\w.]+ is blocked", str(err), re.IGNORECASE)
        if call is not None:  # torch refused it before anything ran
            raise ValueError(f"{path}: holds a pickled call to {call.group(1)}; earmark never unpickles code, so nothing ran, "
                             "and this file is not a plain checkpoint: get the weights from a source you trust.") from None
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if refused is None:  # "Unsupported operand", "invalid load key": not a pickle torch wrote
            raise ValueError(f"{path}: is corrupt or truncated (not a valid checkpoint pickle); download or copy it again.") from None
        raise ValueError(f"{path}: holds a pickled {refused.group(1)}, and earmark reads only tensors and plain values from a "
                         "checkpoint; re-save the weights alone, e.g. torch.save(ckpt['state_dict'], 'weights.pt').") from None
    except (RuntimeError, EOFError, KeyError, IndexError, OSError, ValueError) as err:  # IndexError: bytes that are no pickle (a WAV)
        raise ValueError(f"{path}: is corrupt or truncated ({type(err).__name__} while reading it); download or copy it again.") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: holds a {type(ckpt).__name__}, not a dict of tensors; is it a checkpoint?")
    return ckpt


def strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def first_prefix(state: dict[str, torch.Tensor], prefixes: tuple[str, ...], probe: str) -> str | None:
    """The first of ``prefixes`` under which ``probe`` (a key suffix) exists, or None."""
    return next((p for p in prefixes if p + probe in state), None)


def check_format(fmt: str, ckpt: dict, src: str | os.PathLike, looks_like: dict[str, Callable[[dict], bool]]) -> None:
    """Refuse a file that is not ``fmt`` by its keys, naming the format it does look like when one does."""
    if looks_like[fmt](ckpt):
        return
    others = [other for other, test in looks_like.items() if other != fmt and test(ckpt)]
    hint = (f"its keys are those of the {others[0]} format, so run `earmark convert --from {others[0]}`" if others
            else f"its keys match none of the formats earmark reads ({', '.join(sorted(looks_like))})")
    raise ValueError(f"{src}: is not a {fmt} checkpoint; {hint}.")
