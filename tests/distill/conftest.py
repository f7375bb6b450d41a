"""A small synthetic dataset and a trained tiny teacher checkpoint shared by the distillation tests."""

import pytest

from earmark.audio.synth import synthesize
from earmark.distill import DistillConfig, distill


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("distill-synth"), seed=1, clips_per_class=10, soundscapes=1)


@pytest.fixture(scope="session")
def teacher_ckpt(synth_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    return distill(DistillConfig(data=str(synth_data.clips_csv), out=str(out), student="tfsepnet40",
                                 student_overrides={"base_channels": 16}, epochs=2, batch_size=16, kd=False, progress=False))
