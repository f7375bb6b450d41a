"""The teacher registry (timm style): each family module registers itself; nothing here knows a family.

A family module (``earmark/teachers/<family>.py``) holds the whole family: its variants, how to build one,
its FrontendSpec (in the variants' ``frontend``), its length policy (``length`` / ``frames`` / ``crop``)
and its official-checkpoint readers. Adding a family is that file plus its name in ``FAMILY_MODULES``.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

FAMILY_MODULES = ("beats", "asit", "atst", "ssast", "ast", "acmsskd", "efficientat", "panns")  # earmark.teachers.<name>, each calls register()


@dataclass(frozen=True)
class Converter:
    """An ``earmark convert --from FORMAT`` reader: ``read(ckpt, **options) -> Mapped`` and a test on the file's keys."""

    read: Callable[..., Any]
    looks_like: Callable[[dict], bool]
    summary: str


@dataclass(frozen=True)
class TeacherFamily:
    """One family: ``build(arguments) -> backbone`` over ``{**variants[name], **overrides}``."""

    name: str
    build: Callable[[dict[str, Any]], nn.Module]
    variants: dict[str, dict[str, Any]]
    formats: dict[str, Converter] = field(default_factory=dict)


_FAMILIES: dict[str, TeacherFamily] = {}


def register(family: TeacherFamily) -> TeacherFamily:
    """Add a family (called once by its module at import)."""
    clash = set(family.variants) & {name for f in _FAMILIES.values() if f.name != family.name for name in f.variants}
    if clash:
        raise ValueError(f"teacher names {sorted(clash)} are registered twice.")
    _FAMILIES[family.name] = family
    return family


def families() -> dict[str, TeacherFamily]:
    """Every registered family, importing the family modules on first use."""
    for module in FAMILY_MODULES:
        importlib.import_module(f"earmark.teachers.{module}")
    return _FAMILIES


def build_config(cls: type, args: dict[str, Any]) -> Any:
    """``cls(**args)`` for a config dataclass, with one clear error for an argument it does not take."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(args) - names)
    if unknown:
        raise ValueError(f"unknown teacher arguments {unknown}; {cls.__name__} takes {sorted(names)}.")
    return cls(**args)


def _family_of(name: str) -> TeacherFamily:
    for family in families().values():
        if name in family.variants:
            return family
    raise ValueError(f"unknown teacher {name!r}; choose one of {sorted(list_teachers())}.")


def arguments(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A variant's constructor arguments with ``overrides`` applied (lists become tuples, as JSON stores them)."""
    merged = {**_family_of(name).variants[name], **(overrides or {})}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in merged.items()}


def create_teacher(name: str, **overrides: Any) -> nn.Module:
    """A registered teacher backbone (random weights; load official ones with `earmark convert`)."""
    return _family_of(name).build(arguments(name, overrides))


def list_teachers() -> list[str]:
    """Registered teacher names."""
    return [name for family in families().values() for name in family.variants]


def length_policy(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """How the teacher fits input length, as recorded in checkpoints: ``any``, ``fit`` (pad/cut to ``frames``) or ``resize``."""
    args = arguments(name, overrides)
    mode = args.get("length", "any")
    return {"mode": mode, **({"frames": args["frames"], "crop": args.get("crop", "start")} if mode != "any" else {})}


def converters() -> dict[str, Converter]:
    """Every ``earmark convert --from`` format of the teacher families."""
    return {fmt: conv for family in families().values() for fmt, conv in family.formats.items()}
