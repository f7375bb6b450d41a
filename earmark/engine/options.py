"""Run configs as command-line options: a config dataclass generates its argparse options, so each default is written once.

    add_config_options(parser, FinetuneConfig, HELP, positional=("teacher",))
    config = config_from_args(FinetuneConfig, args)   # --config FILE first, then the flags given

Options are named after the fields (``batch_size`` -> ``--batch-size``) unless renamed. Every option defaults to
``argparse.SUPPRESS``, so the namespace holds only what the user typed: a run's ``config.json`` given with
``--config`` supplies the rest, and the dataclass its defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")
CONFIG_HELP = "a run's config.json to repeat; the options given override its values"
# The settings every training verb shares; a verb's help table names them with None.
SHARED_HELP = {
    "batch_size": "clips per optimiser step (per process)",
    "clip_seconds": "the crop the model sees",
    "val_fold": "the fold that picks the best epoch",
    "test_fold": "the fold the results are reported on",
    "precision": "autocast precision",
    "seed": "seeds the model's initial weights, the data order and the augmentations",
    "workers": "DataLoader workers decoding audio, per process (default: from this machine's CPU count)",
    "skip_bad": "decode every file first and leave out those that are empty, undecodable or hold NaN/inf samples (and bad "
                "manifest rows), each named in the log and listed in OUT/skipped.txt; without it the first such file stops the run",
}


# The range of every numeric setting a run config may hold, by field name (from flags and from --config files alike).
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    **dict.fromkeys(["epochs", "batch_size", "steps", "grad_accum", "qat_epochs", "calibration_clips", "restart_epochs"],
                    (lambda v: v >= 1, "a whole number of at least 1")),
    **dict.fromkeys(["lr", "qat_lr", "clip_seconds", "temperature", "head_lr_scale"], (lambda v: v > 0, "a positive number")),
    **dict.fromkeys(["warmup_epochs", "warmup_steps", "ckpt_every", "workers", "specaugment_freq", "freq_mask", "time_mask", "seed",
                     "val_fold", "test_fold"], (lambda v: v >= 0, "a whole number of at least 0")),
    **dict.fromkeys(["weight_decay", "mixup_alpha", "feature_weight", "hard_weight", "kd_gamma", "roll_seconds",
                     "freq_mixstyle_alpha", "min_duration", "max_gap", "max_false_alarms"], (lambda v: v >= 0, "zero or a positive number")),
    **dict.fromkeys(["freq_mixstyle_p", "dir_p"], (lambda v: 0 <= v <= 1, "a probability from 0 to 1")),
    "median": (lambda v: v >= 1, "a whole number of at least 1"),
}


def check_ranges(values: dict[str, Any], prefix: str = "") -> None:
    """Refuse, in one sentence naming the option, a number out of its range (``--batch-size 0``, ``--lr -1``) or not
    finite (``--mix-snr nan 10``)."""
    for name, value in values.items():
        test, what = RANGES.get(name, (lambda v: True, "a finite number"))
        for number in value if isinstance(value, tuple) else (value,):
            if isinstance(number, (int, float)) and not (math.isfinite(number) and test(number)):
                raise ValueError(f"--{(prefix + name).replace('_', '-')} {number} is not {what}; pass one that is (see --help).")


def _field_type(cls: type, field: dataclasses.Field) -> tuple[type, bool]:
    """(the scalar type of a field, whether it may be None)."""
    hint = typing.get_type_hints(cls)[field.name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in args if a is not type(None)), type(None) in args
    return typing.get_origin(hint) or hint, False


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def add_config_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, help: dict[str, str],
                       positional: tuple[str, ...] = (), rename: dict[str, str] | None = None,
                       choices: dict[str, list] | None = None, config_option: bool = True, prefix: str = "") -> None:
    """One option per field of ``cls`` named in ``help`` (fields left out keep their dataclass default).

    ``prefix`` namespaces a second config on the same parser (``--kd-epochs`` for the KD stage's ``epochs``).
    """
    rename, choices = rename or {}, choices or {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(help) - set(fields)
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {sorted(unknown)}")
    for name, text in help.items():
        field, text = fields[name], text or SHARED_HELP[name]
        kind, optional = _field_type(cls, field)
        default = _default(field)
        if default is dataclasses.MISSING and not prefix:
            text += " (required, or from --config)"
        elif "default" not in text and not isinstance(default, bool) and default not in ("", None, [], {}):
            text += f" (default: {json.dumps(default) if isinstance(default, (dict, list)) else default})"
        text = text.replace("%", "%%")
        if name in positional:
            parser.add_argument(prefix + name, nargs="?", default=argparse.SUPPRESS, help=text)
            continue
        flag = rename.get(name, "--" + (prefix + name).replace("_", "-"))
        common = dict(dest=prefix + name, default=argparse.SUPPRESS)
        if kind is bool and optional:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=text, **common)
        elif kind is bool:
            negative = flag.startswith("--no-")
            parser.add_argument(flag, action="store_false" if negative or default is True else "store_true", help=text, **common)
        elif kind is list:
            metavar = None if name in choices else name.upper().rstrip("S")
            parser.add_argument(flag, action="append", choices=choices.get(name), metavar=metavar, help=text, **common)
        elif kind is dict:
            parser.add_argument(flag, type=json.loads, metavar="JSON", help=text, **common)
        elif kind is tuple:  # a fixed number of values, e.g. a range: --mix-snr 0 15
            items = typing.get_args(typing.get_type_hints(cls)[field.name])
            parser.add_argument(flag, type=items[0], nargs=len(items), help=text, **common)
        else:
            metavar = None if name in choices else flag.lstrip("-").upper().replace("-", "_")
            parser.add_argument(flag, type=kind, choices=choices.get(name), metavar=metavar, help=text, **common)
    if config_option:
        parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP)


def config_from_args(cls: type[C], args: argparse.Namespace, prefix: str = "", **fixed: Any) -> C:
    """``cls`` from --config FILE (if given), then the options given, then ``fixed``; names a missing required field."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None) and not prefix:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such config; pass the config.json a run wrote in its folder.")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: is not a run's config.json ({err}); pass the config.json a run wrote in its folder.") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: holds a JSON {type(values).__name__}, not a run's settings; pass the config.json a run "
                             "wrote in its folder.")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"{args.config} has settings {sorted(unknown)} that {cls.__name__} does not know; "
                         "is it the config.json of another verb's run?")
    values.update({k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix) and k[len(prefix):] in names})
    values.update(fixed)
    for f in dataclasses.fields(cls):  # JSON and nargs give lists; a tuple field keeps its type
        if f.name in values and _field_type(cls, f)[0] is tuple:
            values[f.name] = tuple(values[f.name])
    check_ranges(values, prefix)
    missing = [f.name for f in dataclasses.fields(cls) if _default(f) is dataclasses.MISSING and f.name not in values]
    if missing:
        raise ValueError(f"missing {', '.join(m.upper() for m in missing)}: pass {'it' if len(missing) == 1 else 'them'} "
                         "(see --help), or --config with a run's config.json.")
    return cls(**values)
