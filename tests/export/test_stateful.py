"""A causal student exported stateful: one hop plus state in ONNX Runtime equals the PyTorch model on the whole signal."""

import io
import json

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
import pytest
import soundfile as sf
import torch

from earmark.audio.features import compute_features
from earmark.engine.checkpoint import save_checkpoint
from earmark.export import export_onnx
from earmark.runtime import StreamingClassifier, classify_wave, load_backend
from earmark.runtime.daemon import Listener
from earmark.runtime.postprocess import EventSettings
from earmark.runtime.sinks import JsonLinesSink
from earmark.runtime.sources import FileSource
from earmark.students import create_student, student_checkpoint_meta

LABELS = ["alarm", "knock"]


def causal_checkpoint(path, name="crnn_causal_tiny", seed=0):
    """An untrained causal student with BatchNorm statistics that are not the identity, saved as a frame detector."""
    torch.manual_seed(seed)
    model = create_student(name, len(LABELS), "frame").eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.3)
            module.running_var.uniform_(0.5, 2.0)
    save_checkpoint(path, model.state_dict(), student_checkpoint_meta(model, name, LABELS, "frame", objective="detect",
                                                                       window_seconds=1.0, hop_seconds=0.5))
    return model


def signal(seconds=3.0, rate=32000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 1500 * t) * (t > 1.2)
    return wave.astype(np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("causal")
    model = causal_checkpoint(folder / "student")
    return model, export_onnx(folder / "student", folder / "causal.onnx")


def test_the_file_says_it_is_stateful_and_names_its_state(exported):
    _, result = exported
    meta = result.metadata
    assert meta.stateful and meta.input_frames == 4 and meta.hop_seconds == meta.window_seconds == pytest.approx(0.0625)
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in sess.get_inputs()}
    outputs = [o.name for o in sess.get_outputs()]
    assert list(inputs) == ["features", *meta.state_inputs] and outputs == ["frame_probs", "clip_probs", *meta.state_outputs]
    assert [tuple(inputs[name]) for name in meta.state_inputs] == [tuple(s) for s in meta.state_shapes]
    assert all(g.passed for g in result.gates)


def test_streaming_in_onnx_runtime_equals_pytorch_on_the_whole_file_hop_by_hop_or_several_a_call(exported):
    model, result = exported
    wave = signal()
    classifier = StreamingClassifier(result.path)
    run, calls = classifier.backend.run, []
    classifier.backend.run = lambda features: calls.append(features.shape[-1] // 4) or run(features)  # hops a call
    rng = np.random.default_rng(1)
    segments, start = [], 0
    while start < wave.size:  # microphone-like blocks of random size, up to 6 hops
        size = int(rng.integers(100, 12000))
        segments += [s for r in classifier.push(wave[start:start + size], 32000) for s in r.segments]
        start += size
    segments += [s for r in classifier.flush() for s in r.segments]
    streamed, whole = np.stack([s.probs for s in segments]), _whole_file(model, wave)
    assert len(streamed) == len(whole) == int(3.0 / 0.0625)
    assert np.abs(streamed - whole).max() < 1e-5
    assert [round(s.end, 4) for s in segments[:3]] == [0.0625, 0.125, 0.1875]  # each hop's frame at its own time
    assert sum(calls) == len(whole) and len(calls) < len(whole) / 2  # the hops a block completes run in one call


def _whole_file(model, wave):
    """The PyTorch model's frame probabilities on the whole signal."""
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(compute_features(model.frontend, wave))[None, None]).frame_logits[0]).numpy()


def test_a_whole_file_runs_in_one_call_from_zero_state_every_time(exported):
    model, result = exported
    backend = load_backend(result.path)
    run, calls = backend.run, []
    backend.run = lambda features: calls.append(features.shape[-1] // 4) or run(features)  # hops a call
    wave, whole = signal(), _whole_file(model, signal())
    first, second = (np.stack([s.probs for r in classify_wave(backend, wave) for s in r.segments]) for _ in range(2))
    assert calls == [len(whole), len(whole)]
    assert np.abs(first - whole).max() < 1e-5
    np.testing.assert_array_equal(first, second)  # the second file starts from zero state, not from the first's


def test_a_stateful_file_that_scores_one_frame_for_several_hops_is_refused_in_one_sentence(exported, tmp_path):
    _, result = exported  # its frame output cut to the last frame: a graph traced with one hop baked in behaves so
    graph = onnx.load(str(result.path))
    frame = result.metadata.outputs["frame"]
    for node in graph.graph.node:
        node.output[:] = [f"{frame}_all" if name == frame else name for name in node.output]
        node.input[:] = [f"{frame}_all" if name == frame else name for name in node.input]
    graph.graph.initializer.extend(numpy_helper.from_array(np.array([v], np.int64), name) for name, v in
                                   (("last_start", -1), ("last_end", 2**62), ("last_axis", 1)))
    graph.graph.node.append(onnx.helper.make_node("Slice", [f"{frame}_all", "last_start", "last_end", "last_axis"], [frame]))
    onnx.save(graph, str(tmp_path / "one-frame.onnx"))
    classifier = StreamingClassifier(tmp_path / "one-frame.onnx")
    with pytest.raises(RuntimeError, match=r"scored 1 of the \d+ hops .*re-export it with `earmark export`"):
        classifier.push(signal(seconds=0.5), 32000)


class GappySource:
    """A source protocol stand-in that was reopened (a gap) after its second block, as the microphone source counts it."""

    sample_rate = 32000

    def __init__(self, wave):
        self.blocks, self.reconnects, self.overruns = list(np.array_split(wave, 4)), 0, 0

    def read(self, timeout):
        if not self.blocks:
            return None
        self.reconnects = int(len(self.blocks) <= 2)
        return self.blocks.pop(0)

    def close(self):
        pass


def test_a_gap_in_the_source_resets_the_state_and_the_status_says_so(exported):
    _, result = exported
    out = io.StringIO()
    Listener(StreamingClassifier(result.path), GappySource(signal(seconds=2.0)), [JsonLinesSink(out)], EventSettings()).run()
    status = json.loads(out.getvalue().splitlines()[-1])
    assert status["type"] == "status" and status["stateful"] is True and status["state_resets"] == 1
    assert all(not state.any() for state in StreamingClassifier(result.path).backend.state.values())  # a new stream: zeros


def test_bench_runs_a_stateful_file_one_hop_at_a_time(exported):
    from earmark.export.benchmark import bench_onnx

    _, result = exported
    rows = bench_onnx(result.path, runs=5)
    assert rows and all(row.batch == 1 for row in rows)


def _resets(model_path, wave, block):
    """state_resets after streaming ``wave`` in blocks of ``block`` samples."""
    classifier = StreamingClassifier(model_path)
    for start in range(0, wave.size, block):
        classifier.push(wave[start:start + block], 32000)
    return classifier.state_resets


@pytest.mark.parametrize("block", [700, 32000, 96000])
def test_digital_silence_resets_the_state_once_per_run_in_any_blocks(exported, block):
    _, result = exported
    zeros = lambda seconds: np.zeros(int(seconds * 32000), np.float32)
    sound = signal(seconds=1.0)
    assert _resets(result.path, np.concatenate([sound, zeros(1.0), sound, zeros(0.6), sound]), block) == 2
    assert _resets(result.path, np.concatenate([sound, zeros(0.3), sound, zeros(0.4), sound]), block) == 0  # short dropouts
    quiet = (1e-4 * np.random.default_rng(0).standard_normal(64000)).astype(np.float32)  # a quiet room is not silence
    assert _resets(result.path, np.concatenate([sound, quiet, sound]), block) == 0


def test_silence_in_a_file_shows_in_listens_status(exported, tmp_path):
    _, result = exported
    wave = np.concatenate([signal(seconds=1.0), np.zeros(32000, np.float32), signal(seconds=1.0)])
    sf.write(tmp_path / "muted.wav", wave, 32000)  # 16-bit: the zeros stay exact
    out = io.StringIO()
    Listener(StreamingClassifier(result.path), FileSource(str(tmp_path / "muted.wav"), fast=True), [JsonLinesSink(out)],
             EventSettings()).run()
    status = json.loads(out.getvalue().splitlines()[-1])
    assert status["stateful"] is True and status["state_resets"] == 1 and status["reconnects"] == 0
