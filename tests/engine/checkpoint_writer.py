"""The process the kill test shoots: for each attempt number read on stdin it forks a child that overwrites one
checkpoint until killed, and prints the child's pid. Forking from this single-threaded process is fast and safe."""

import os
import signal
import sys
from pathlib import Path

import torch

from earmark.engine import CheckpointMeta, save_checkpoint

META = CheckpointMeta(family="student", model="m", model_args={}, frontend={}, labels=["a", "b"])


def state(value: float) -> dict[str, torch.Tensor]:
    """A 1 MB checkpoint whose every value says which write made it."""
    return {"w": torch.full((1 << 18,), value), "b": torch.full((3,), value)}


def main(folder: Path) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # killed children are reaped at once
    for line in sys.stdin:
        attempt = int(line)
        pid = os.fork()
        if pid == 0:
            try:
                for i in range(10_000):
                    save_checkpoint(folder / "student", state(attempt * 10_000 + i), META)
            finally:
                os._exit(0)
        print(pid, flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
