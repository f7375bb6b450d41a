"""The one schema check of ``earmark.json``: every loader runs it, every problem is one sentence naming the file.

The engine knows no model, so the checks that need one take what the registry knows: the constructor
(``check_arguments``) and the width of the model's output (``check_output_width``).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

from earmark.engine.outputs import OBJECTIVES

TASKS = ("clip", "frame")
_TYPES = {"family": str, "model": str, "model_args": dict, "frontend": dict, "labels": list, "task": str,
          "provenance": dict, "extra": dict, "format_version": int}


def check_meta(data: Any, meta_class: type, source: str) -> None:
    """Refuse an ``earmark.json`` whose fields are unknown, missing or of the wrong kind (``meta_class``: its dataclass)."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: holds a {type(data).__name__}, not an object of checkpoint fields; re-create the checkpoint.")
    fields = dataclasses.fields(meta_class)
    known = {f.name for f in fields}
    required = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    unknown, missing = sorted(set(data) - known), sorted(required - set(data))
    if unknown or missing:
        problems = [f"unknown field(s) {unknown}" if unknown else "", f"missing field(s) {missing}" if missing else ""]
        raise ValueError(f"{source}: {' and '.join(p for p in problems if p)}; the fields are {sorted(known)} "
                         "(a file written by another earmark version? re-create the checkpoint with this one).")
    for name, kind in _TYPES.items():
        if name in data and not isinstance(data[name], kind):
            raise ValueError(f"{source}: field {name!r} must be a {kind.__name__}, not {data[name]!r}.")
    if data.get("task", "clip") not in TASKS:
        raise ValueError(f"{source}: task {data['task']!r} is neither of {list(TASKS)}.")
    if data.get("objective", "classify") not in OBJECTIVES:  # the family is checked by load_model, against the registered ones
        raise ValueError(f"{source}: objective {data['objective']!r} is neither 'classify' (scenes) nor 'detect' (events).")
    labels = data.get("labels", [])
    if not all(isinstance(label, str) for label in labels) or len(set(labels)) != len(labels):
        raise ValueError(f"{source}: labels must be distinct class names, not {labels!r}.")


def check_arguments(constructor: Callable, arguments: dict[str, Any], what: str) -> None:
    """Refuse constructor arguments that ``constructor`` does not take (one sentence listing the ones it does)."""
    parameters = inspect.signature(constructor).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(arguments) - set(parameters))
    if unknown:
        accepted = sorted(n for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        raise ValueError(f"{what} takes no argument(s) {unknown}; it accepts {accepted}.")


def check_output_width(labels: list[str], width: int) -> None:
    """Refuse a label list whose length is not the number of outputs the model scores."""
    if len(labels) != width:
        raise ValueError(f"it names {len(labels)} labels but the model has {width} outputs; "
                         "the labels must list one class name per output, in output order.")
