"""`earmark bench`: latency and throughput of PyTorch eager, ONNX Runtime (fp32 / fp16 / int8) and TensorRT."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import psutil
from google.protobuf.message import DecodeError
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidProtobuf

from earmark.audio.metadata import METADATA_KEY, ModelMetadata
from earmark.export.timing import cpu_flags, describe_cpu, repeated


@dataclass
class BenchRow:
    """One measured configuration."""

    model: str
    backend: str
    precision: str
    threads: int
    batch: int
    p50_ms: float  # wall clock
    p99_ms: float
    cpu_p50_ms: float  # CPU time of the calling thread (one-thread sessions) or of the process (more threads)
    items_per_s: float
    rss_growth_mb: float


def _row(model: str, backend: str, precision: str, threads: int, batch: int, make: Callable[[], Callable[[], object]], runs: int) -> BenchRow:
    rss = psutil.Process().memory_info().rss
    call = make()
    times = repeated(call, runs, clock=time.thread_time if threads == 1 else time.process_time)
    grown = (psutil.Process().memory_info().rss - rss) / 2**20
    return BenchRow(model, backend, precision, threads, batch, times.wall_p50, float(np.percentile(times.wall_ms, 99)),
                    times.cpu_p50, 1000 * batch / times.cpu_p50, grown)


def session(path: str | os.PathLike, threads: int = 1, profile_prefix: str | None = None,
            optimized_path: str | os.PathLike | None = None) -> ort.InferenceSession:
    """An ONNX Runtime CPU session with few threads and spinning disabled (edge settings); with ``profile_prefix``,
    ONNX Runtime's profiler writes its trace there (``end_profiling()`` returns the file); with ``optimized_path``, the
    graph it runs (its fusions and layouts, whose node names the profile uses) is saved there."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    if optimized_path:  # saving an NCHWc-optimized graph warns that it is machine-specific: it is only read back here
        options.optimized_model_filepath, options.log_severity_level = str(optimized_path), 3
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such model; export one with `earmark export CHECKPOINT`.")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except (InvalidArgument, InvalidProtobuf, Fail) as err:
        raise ValueError(f"{path}: is not a readable ONNX model ({str(err).splitlines()[0]}); export it again with `earmark export`.") from None


def optimized_op_counts(path: str | os.PathLike, workdir: str | os.PathLike) -> Counter[str]:
    """How many nodes of each op type ONNX Runtime runs for a file: its optimized graph (this CPU's layouts and fusions,
    one thread), saved under ``workdir``."""
    optimized = Path(workdir) / f"{Path(path).stem}.optimized.onnx"
    session(path, optimized_path=optimized)
    return Counter(node.op_type for node in onnx.load(str(optimized)).graph.node)


def read_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """An .onnx file's graph and metadata; a missing, empty or damaged file is refused in one sentence naming it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such model; export one with `earmark export CHECKPOINT`.")
    try:
        model = onnx.load(str(path))
    except (DecodeError, OSError, ValueError) as err:
        raise ValueError(f"{path}: is not a readable ONNX model ({err}); export it again with `earmark export`.") from None
    if not model.graph.node:
        raise ValueError(f"{path}: holds no ONNX graph ({Path(path).stat().st_size} bytes); export it again with `earmark export`.")
    return model


def read_metadata(path: str | os.PathLike) -> ModelMetadata:
    """The earmark metadata of an exported model (clear error when absent); needs only ONNX Runtime."""
    props = session(path).get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise ValueError(f"{path}: has no earmark metadata; export it with `earmark export`.")
    return ModelMetadata.from_json(props[METADATA_KEY], str(path))


def bench_onnx(path: str | os.PathLike, batch: int = 8, runs: int = 50) -> list[BenchRow]:
    """Batch-1 latency and batch-N throughput on 1 thread and on all cores, spinning disabled."""
    meta = read_metadata(path)
    first = session(path).get_inputs()[0].shape[0]
    dynamic = not isinstance(first, int)  # a named or unknown batch dimension
    rng = np.random.default_rng(0)
    features = lambda n: rng.standard_normal((n, 1, meta.frontend.n_mels, meta.input_frames)).astype(np.float32)
    state = {name: np.zeros(shape, np.float32) for name, shape in zip(meta.state_inputs, meta.state_shapes)}  # one hop of a stateful model
    rows = []
    for threads in sorted({1, os.cpu_count() or 1}):
        sess = session(path, threads)
        one = features(1 if dynamic else first)
        rows.append(_row(Path(path).name, "onnxruntime", meta.precision, threads, len(one),
                         lambda: (lambda: sess.run(None, {meta.input_name: one, **state})), runs))
        if dynamic and batch > 1:
            many = features(batch)
            rows.append(_row(Path(path).name, "onnxruntime", meta.precision, threads, batch,
                             lambda: (lambda: sess.run(None, {meta.input_name: many})), max(runs // 4, 5)))
    return rows


def bench_torch(checkpoint: str | os.PathLike, batch: int = 8, runs: int = 50) -> list[BenchRow]:
    """PyTorch eager on the checkpoint's float model, batch 1 and batch N."""
    import torch

    from earmark.export.loading import LoadedModel, ScoresHead

    loaded = LoadedModel.open(checkpoint)
    head = ScoresHead(loaded.model, loaded.meta.task, loaded.objective).eval()
    rows = []
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        for n in (1, batch):
            x = torch.randn(n, 1, loaded.frontend.n_mels, loaded.input_frames)

            def make():
                return lambda: head(x)

            with torch.inference_mode():
                rows.append(_row(Path(checkpoint).name, "pytorch", "fp32", threads, n, make, runs if n == 1 else max(runs // 4, 5)))
    return rows


def frontend_cost_ms(meta: ModelMetadata, seconds: float = 10.0, runs: int = 5) -> float:
    """CPU milliseconds (calling thread) the numpy frontend takes per second of audio, BLAS pinned to one thread."""
    from threadpoolctl import threadpool_limits

    from earmark.audio.features import compute_features

    wave = np.random.default_rng(0).standard_normal(int(seconds * meta.frontend.sample_rate)).astype(np.float32) * 0.1
    with threadpool_limits(1):
        return repeated(lambda: compute_features(meta.frontend, wave), runs, warmup=1).cpu_p50 / seconds


def format_table(rows: list[BenchRow]) -> str:
    """A fixed-width table of the rows, under the CPU's flags; items/s is per CPU second."""
    header = (f"{'model':<28} {'backend':<12} {'prec':<5} {'thr':>3} {'batch':>5} {'CPU p50 ms':>10} {'wall p50':>8} "
              f"{'wall p99':>8} {'items/CPU s':>11} {'RSS+MB':>7}")
    lines = [describe_cpu(), header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.model[:28]:<28} {r.backend:<12} {r.precision:<5} {r.threads:>3} {r.batch:>5} "
                     f"{r.cpu_p50_ms:>10.3f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f} {r.items_per_s:>11.1f} {r.rss_growth_mb:>7.1f}")
    return "\n".join(lines)


def write_json(rows: list[BenchRow], frontend_ms: dict[str, float], path: str | os.PathLike) -> None:
    """Save the rows and the frontend cost as JSON."""
    Path(path).write_text(json.dumps({"cpu": cpu_flags(), "rows": [asdict(r) for r in rows],
                                      "frontend_cpu_ms_per_audio_second": frontend_ms}, indent=2))
