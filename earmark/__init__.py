"""earmark: self-supervised audio teachers -> KD + QAT students -> ONNX/TensorRT -> live listening on the edge.

The stage packages name their public API in ``__all__`` and import each name's module on first use
(``lazy_namespace``), so importing one light module of a stage (a verb's options, a metric) does not import the
whole stage, and `earmark VERB --help` answers at once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__version__ = "0.1.0"


def lazy_namespace(package: str, homes: dict[str, list[str]]) -> tuple[list[str], Callable[[str], Any]]:
    """(``__all__``, module ``__getattr__``) for ``package``: ``homes`` maps each module to the names it provides."""
    module_of = {name: module for module, names in homes.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module_of[name]), name)

    return list(module_of), __getattr__
