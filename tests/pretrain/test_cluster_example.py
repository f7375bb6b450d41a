"""The README's cluster example (`earmark data shard` then `torchrun ... pretrain asit --data shards/`) on demo data, 2 CPU ranks."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from earmark.audio.synth import synthesize
from earmark.engine import load_model
import earmark.teachers  # noqa: F401  (importing the stage registers how teacher checkpoints are rebuilt)

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.slow
def test_the_readme_cluster_example_pretrains_on_shards_with_two_ranks(tmp_path):
    text = README.read_text()
    shard = shlex.split(re.search(r"^earmark data shard .*$", text, re.M).group(0))
    launch = shlex.split(re.search(r"^torchrun --nnodes .* pretrain asit --data shards/.*$", text, re.M).group(0))
    data = synthesize(tmp_path / "data", clips_per_class=2, soundscapes=1)
    shard = [sys.executable, "-m", "earmark.cli", *[{"data/clips.csv": str(data.clips_csv), "shards/": str(tmp_path / "shards")}.get(a, a)
                                                    for a in shard[1:]]]
    assert subprocess.run(shard, capture_output=True, text=True, timeout=120).returncode == 0
    # The same launch on one machine: 2 CPU ranks instead of 4 nodes x 8 GPUs, a tiny ASiT and a two-step budget.
    module = launch.index("-m")
    args = [{"shards/": str(tmp_path / "shards"), "6": "1"}.get(a, a) for a in launch[module:]]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29547", *args,
           "--teacher", "asit_tiny", "--steps", "2", "--batch-size", "2", "--clip-seconds", "1", "--out", str(tmp_path / "run")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    model, meta = load_model(tmp_path / "run" / "teacher", "teacher")
    assert meta.provenance["data"] == str(tmp_path / "shards") and meta.provenance["steps"] == 2
