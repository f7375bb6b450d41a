"""A causal student learns from a non-causal frame teacher (frame KD), goes through weight-only QAT, exports stateful
(fp32 and INT8), and scores a soundscape after five minutes of background as after five seconds."""

import json

import numpy as np
import soundfile as sf

from earmark.audio.synth import synthesize
from earmark.distill import DistillConfig, distill
from earmark.engine import read_meta
from earmark.export import export_onnx
from earmark.runtime import StreamingClassifier


def test_a_causal_student_distils_from_a_frame_teacher_with_qat_and_exports_stateful(tmp_path, monkeypatch):
    monkeypatch.setenv("NNCF_EXTENSION_LOAD_TIMEOUT", "600")
    data = synthesize(tmp_path / "data", seed=4, clips_per_class=1, soundscapes=10)
    common = dict(data=str(data.soundscapes_tsv), task="frame", clip_seconds=10.0, epochs=1, batch_size=4, val_fold=1, test_fold=2,
                  progress=False)
    teacher = distill(DistillConfig(out=str(tmp_path / "teacher"), student="tfsepnet16", kd=False, **common))  # hears the future
    final = distill(DistillConfig(out=str(tmp_path / "causal"), teachers=[str(teacher)], student="crnn_causal_tiny", qat=True,
                                  qat_epochs=1, int8_scope="weights", **common))
    results = json.loads((tmp_path / "causal" / "results.json").read_text())
    assert final.name == "student-int8" and "frame_f1" in results["int8"]
    assert read_meta(final).model == "crnn_causal_tiny" and read_meta(final).task == "frame"
    exported = export_onnx(tmp_path / "causal" / "student", tmp_path / "causal.onnx")
    assert exported.metadata.stateful and set(exported.metadata.thresholds) == set(exported.metadata.labels)
    int8 = export_onnx(final, tmp_path / "causal-int8.onnx")  # streamed hop by hop against the fake-quantized model
    assert int8.metadata.stateful and int8.precision == "int8" and int8.metadata.quantization["scope"] == "weights"
    assert all(gate.passed for gate in int8.gates) and int8.bytes < exported.bytes
    background, rate = sf.read(sorted(data.backgrounds.glob("*.wav"))[0], dtype="float32")
    scape, _ = sf.read(data.root / "audio" / "scape-000.wav", dtype="float32")
    soon, late = (frame_scores(exported.path, np.tile(background, 400)[-int(lead * rate):], scape, rate) for lead in (5.0, 300.0))
    assert len(soon) == len(late) == int(len(scape) / rate / 0.0625) and np.abs(soon - late).max() < 1e-3  # the state forgot


def frame_scores(model, lead, scape, rate):
    """The frame scores over ``scape`` streamed after ``lead`` (a whole number of hops long), in 0.5-s blocks."""
    classifier = StreamingClassifier(model)
    wave = np.concatenate([lead, scape])
    block = rate // 2
    segments = [s for start in range(0, wave.size, block) for r in classifier.push(wave[start:start + block], rate) for s in r.segments]
    segments += [s for r in classifier.flush() for s in r.segments]
    return np.stack([s.probs for s in segments if s.start >= len(lead) / rate - 1e-6])
