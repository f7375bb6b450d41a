"""argparse types for every verb's numbers: a value that does not parse, is not finite or is out of range is refused
by argparse in one sentence (``argument --runs: '0' is not a whole number of at least 1``), before any work starts."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["checked", "SECONDS", "GAP_SECONDS", "AT_LEAST_ONE", "NON_NEGATIVE", "RATIO", "PORT", "PROBABILITY", "NUMBER",
           "NON_NEGATIVE_NUMBER"]


def checked(cast: Callable[[str], float], test: Callable[[float], bool], what: str) -> Callable[[str], float]:
    """An argparse type that refuses, in one sentence, values that do not parse, are not finite or fail ``test``."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not test(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


SECONDS = checked(float, lambda v: v > 0, "a positive number of seconds")
GAP_SECONDS = checked(float, lambda v: v >= 0, "zero or a positive number of seconds")
AT_LEAST_ONE = checked(int, lambda v: v >= 1, "a whole number of at least 1")
NON_NEGATIVE = checked(int, lambda v: v >= 0, "a whole number of at least 0")
RATIO = checked(float, lambda v: 0 < v <= 1, "a ratio above 0 and at most 1")
PORT = checked(int, lambda v: 0 <= v <= 65535, "a port from 0 to 65535 (0: any free port)")
PROBABILITY = checked(float, lambda v: 0 <= v <= 1, "a probability from 0 to 1")
NUMBER = checked(float, lambda v: True, "a finite number")
NON_NEGATIVE_NUMBER = checked(float, lambda v: v >= 0, "zero or a positive number")
