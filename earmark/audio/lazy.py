"""Package namespaces whose names are imported from their modules on first use (PEP 562): importing one light
module of a package (a verb's options) does not import the whole package, so `earmark VERB --help` answers at once."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_namespace"]


def lazy_namespace(package: str, homes: dict[str, list[str]]) -> tuple[list[str], Callable[[str], Any]]:
    """(``__all__``, module ``__getattr__``) for ``package``: ``homes`` maps each module to the names it provides."""
    module_of = {name: module for module, names in homes.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module_of[name]), name)

    return list(module_of), __getattr__
