"""Timing that a busy machine does not distort: the calling thread's CPU time beside wall time, and the CPU's flags.

A one-thread ONNX Runtime session (and BLAS pinned to one thread) computes on the calling thread, so
``time.thread_time`` counts exactly the work of a call, whatever else the machine runs; wall time also counts the
time the thread waited for a core. Every bench prints both, takes its ratios from CPU time and names the CPU flags
that decide which integer kernels exist (docs/export.md).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

# the instructions that decide INT8 speed: AVX2 (u8s8 via vpmaddubsw), VNNI (vpdpbusd), AMX tiles, ARM's sdot
INT8_FLAGS: tuple[str, ...] = ("avx2", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


def cpu_flags(cpuinfo: str | None = None) -> dict[str, bool]:
    """Which of ``INT8_FLAGS`` this CPU has (from /proc/cpuinfo's flags or Features line; all False where unreadable)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    words = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            words.update(value.split())
    return {flag: flag in words for flag in INT8_FLAGS}


def describe_cpu() -> str:
    """One line naming the machine, its core count and which INT8-relevant flags it has, for every bench's header."""
    flags = cpu_flags()
    has = [flag for flag, present in flags.items() if present] or ["none"]
    lacks = [flag for flag, present in flags.items() if not present]
    return (f"CPU {platform.machine()}, {os.cpu_count()} cores; flags: {' '.join(has)}"
            + (f" (no {' '.join(lacks)})" if lacks else ""))


@dataclass
class Timings:
    """Milliseconds per call: wall clock and the calling thread's CPU time, one entry per run."""

    wall_ms: np.ndarray
    cpu_ms: np.ndarray

    @property
    def cpu_p50(self) -> float:
        """Median CPU milliseconds per call: the figure ratios are taken from."""
        return float(np.median(self.cpu_ms))

    @property
    def wall_p50(self) -> float:
        """Median wall milliseconds per call."""
        return float(np.median(self.wall_ms))


class Meter:
    """Wall and CPU seconds summed over the calls made through it (``clock``: the calling thread's CPU time, or
    ``time.process_time`` where the calls use worker threads, such as a BLAS pool)."""

    def __init__(self, clock: Callable[[], float] = time.thread_time):
        self.clock, self.wall, self.cpu = clock, 0.0, 0.0

    def __call__(self, call: Callable[..., object], *args: object) -> object:
        """``call(*args)``, its return value passed on, its time added."""
        wall, cpu = time.perf_counter(), self.clock()
        out = call(*args)
        self.wall += time.perf_counter() - wall
        self.cpu += self.clock() - cpu
        return out


def timed_call(call: Callable[[], object], clock: Callable[[], float] = time.thread_time) -> tuple[float, float]:
    """Wall and CPU milliseconds of one call."""
    meter = Meter(clock)
    meter(call)
    return 1000 * meter.wall, 1000 * meter.cpu


def repeated(call: Callable[[], object], runs: int, warmup: int = 3, clock: Callable[[], float] = time.thread_time) -> Timings:
    """``runs`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    pairs = np.array([timed_call(call, clock) for _ in range(runs)]).reshape(runs, 2)
    return Timings(pairs[:, 0], pairs[:, 1])


def interleaved(calls: dict[str, Callable[[], object]], runs: int) -> dict[str, Timings]:
    """Each of ``calls`` timed ``runs`` times, taking turns so that machine noise falls on every one alike.

    The order is shuffled on every turn: in a fixed order the call after a large one (PyTorch's eager call, ~20 ms,
    evicts the caches) always runs cold, which cost tfsepnet40's fp32 file 10-15% in bench_export (docs/export.md).
    """
    for call in calls.values():
        for _ in range(3):
            call()
    pairs = {name: np.empty((runs, 2)) for name in calls}
    names, rng = list(calls), np.random.default_rng(0)
    for i in range(runs):
        for name in rng.permutation(names):
            pairs[name][i] = timed_call(calls[name])
    return {name: Timings(p[:, 0], p[:, 1]) for name, p in pairs.items()}
