"""Shared pytest set-up: one intra-op thread (the CI machine has two cores), deterministic seeds."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the runtime's tests run without torch
    pass
