"""`earmark listen --record-background` and `--save-clips`: the enrolment material for `earmark adapt`, from a stream."""

import subprocess

import numpy as np
import pytest
import soundfile as sf

from .models import SAMPLE_RATE, export_detector, tone_track
from .services import LISTEN


@pytest.fixture
def model(tmp_path):
    return export_detector(tmp_path / "tones.onnx", frame=True, hop=0.1)


def test_record_background_writes_that_many_seconds_of_the_stream_and_stops(tmp_path, model):
    wav = tmp_path / "long.wav"
    sf.write(wav, tone_track(8.0, []), SAMPLE_RATE)
    site = tmp_path / "site.wav"
    run = subprocess.run(LISTEN + [str(model), "--source", str(wav), "--fast", "--record-background", "3", "--record-to", str(site)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    recorded, rate = sf.read(site)
    assert rate == SAMPLE_RATE and recorded.size == 3 * SAMPLE_RATE
    assert np.allclose(recorded, sf.read(wav)[0][:recorded.size], atol=1 / 32767)  # PCM_16 of the stream's first 3 s


def test_save_clips_keeps_each_detection_with_a_second_either_side_under_its_label(tmp_path, model):
    wav = tmp_path / "a.wav"
    sf.write(wav, tone_track(6.0, [(2.0, 3.0, 1000.0), (4.0, 4.6, 3000.0)]), SAMPLE_RATE)
    run = subprocess.run(LISTEN + [str(model), "--source", str(wav), "--fast", "--save-clips", str(tmp_path / "clips")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    saved = {path.parent.name: sf.info(path).duration for path in (tmp_path / "clips").glob("*/*.wav")}
    assert set(saved) == {"tone_1k", "tone_3k"}
    assert saved["tone_1k"] == pytest.approx(3.0, abs=0.25)  # 1 s + the 1 s tone + 1 s
    assert saved["tone_3k"] == pytest.approx(2.6, abs=0.25)  # cut at the end of the stream it had heard: 4.6 + 1 > 6
