"""Peak memory of `earmark distill` on the synthetic demo clips, without and with one long WAV added to the manifest.

Clips longer than earmark.audio.datasets_torch.LONG_CLIP_SECONDS are read by windows, so the long file should
add almost nothing. Each run is its own process decoding in-process (`--workers 0`, where decoded clips are kept:
with workers, the peak of the largest process is what wait4 reports), one BLAS/OpenMP thread, synthetic audio.

    python bench/bench_long_clip_memory.py [--minutes 60]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from earmark.audio.synth import synthesize


def write_long_wav(path: Path, minutes: float, rate: int = 32000) -> None:
    """Noise written a minute at a time (this script itself never holds the file)."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as f:
        for _ in range(int(minutes)):
            f.write((0.1 * rng.standard_normal(60 * rate)).astype(np.float32))


def peak_rss_mb(manifest: Path, out: Path) -> float:
    """Peak resident memory of one distill run (a child process), in MiB."""
    cmd = [sys.executable, "-m", "earmark.cli", "distill", "--no-kd", "--student", "tfsepnet16", "--data", str(manifest),
           "--out", str(out), "--epochs", "1", "--batch-size", "16", "--workers", "0"]
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, cwd=out.parent,  # earmark from the environment, not this folder
                             env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(f"distill failed (status {status}): {' '.join(cmd)}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-long-clip-"))
    try:
        paths = synthesize(root / "data", seed=0, clips_per_class=10, soundscapes=1)
        rows = paths.clips_csv.read_text().splitlines()
        write_long_wav(paths.clips_csv.parent / "audio" / "long.wav", args.minutes)
        label = rows[1].split(",")[3]
        with_long = paths.clips_csv.with_name("with_long.csv")
        with_long.write_text("\n".join(rows + [f"long.wav,1,0,{label}"]) + "\n")
        base = peak_rss_mb(paths.clips_csv, root / "base")
        grown = peak_rss_mb(with_long, root / "long")
        print(f"distill peak RSS, 1 thread, synthetic audio: {base:.0f} MiB on {len(rows) - 1} one-second clips, "
              f"{grown:.0f} MiB with one {args.minutes:g}-minute WAV added (+{grown - base:.0f} MiB, x{grown / base:.2f})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
