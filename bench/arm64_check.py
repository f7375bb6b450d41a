"""The edge install on ARM64: the same `earmark listen --source FILE --fast` events on x86 and in an arm64 Debian 12
userland run by qemu-user. Speed under emulation says nothing about a Pi: this script reports events, never times.

Needs root (chroot) and the Debian packages qemu-user-static, debootstrap and binfmt-support; reaches only a Debian
mirror and PyPI. The userland and its venv are cached under --root and reused; the first run takes 10-30 minutes
(debootstrap's second stage and pip run emulated). Without --model it exports the tests' tone detector (needs torch):

    sudo python bench/arm64_check.py [--root ~/.cache/earmark-arm64] [--model MODEL.onnx --source FILE.wav]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = "bookworm"
# what the chroot's pip and earmark need from Debian; the Python wheels come from PyPI (aarch64 builds)
DEBIAN = ["python3", "python3-venv", "libportaudio2", "libsndfile1", "ca-certificates"]
GUEST = Path("/opt/earmark")  # inside the chroot: the venv, the source tree and the check's files
SCORE_TOLERANCE = 1e-3
VERSIONS = ("import platform, numpy, onnxruntime; "
            "print(platform.machine(), 'Python', platform.python_version(), 'numpy', numpy.__version__, 'onnxruntime', onnxruntime.__version__)")


def fail(sentence: str) -> None:
    """Stop with one sentence on stderr."""
    print(f"arm64_check: {sentence}", file=sys.stderr)
    raise SystemExit(1)


def preflight() -> None:
    """Root, the two tools and qemu registered with binfmt_misc (registered here when binfmt-support can)."""
    if os.geteuid() != 0:
        fail("chroot needs root: run it with sudo.")
    for tool, package in (("debootstrap", "debootstrap"), ("qemu-aarch64-static", "qemu-user-static"), ("update-binfmts", "binfmt-support")):
        if shutil.which(tool) is None:
            fail(f"{tool} is missing: apt-get install -y {package}.")
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not entry.exists():
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], check=False)
    if not entry.exists() or "enabled" not in entry.read_text():
        fail("qemu-aarch64 is not registered with binfmt_misc: run `update-binfmts --enable qemu-aarch64` "
             "(in a container the host must allow it).")


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """A command that must succeed; its own output goes to the terminal."""
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def userland(root: Path, mirror: str) -> Path:
    """The cached arm64 Debian rootfs: debootstrap's first stage on the host, its second stage emulated inside."""
    rootfs, ready = root / "rootfs", root / f"{SUITE}-arm64.ready"
    if ready.exists():
        return rootfs
    if not rootfs.exists():
        root.mkdir(parents=True, exist_ok=True)
        run(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase", f"--include={','.join(DEBIAN)}", SUITE, str(rootfs), mirror])
    if not (rootfs / "debootstrap" / "debootstrap").exists():
        fail(f"{rootfs} is neither finished nor a first stage to continue: delete {root} and run again.")
    run(["chroot", str(rootfs), "/debootstrap/debootstrap", "--second-stage"])
    ready.write_text(f"debootstrap --arch=arm64 --variant=minbase {SUITE} {mirror}\n")
    return rootfs


@contextmanager
def mounted(rootfs: Path):
    """/proc and /dev bound into the chroot (and the host's resolver and CA bundle for pip) while the block runs.

    Not /sys: ONNX Runtime's cpuinfo reads the x86 host's CPU topology there and crashes (SIGSEGV) under qemu-user;
    without it cpuinfo fails gracefully with a warning.
    """
    shutil.copyfile("/etc/resolv.conf", rootfs / "etc" / "resolv.conf")
    # the host's CA bundle (a TLS-inspecting proxy's CA included, where the host has one) for the guest's pip
    bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
    (rootfs / GUEST.relative_to("/")).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundle, rootfs / GUEST.relative_to("/") / "host-ca.crt")
    done = []
    try:
        for name in ("proc", "dev"):
            run(["mount", "--bind", f"/{name}", str(rootfs / name)])
            done.append(rootfs / name)
        yield
    finally:
        for path in reversed(done):
            subprocess.run(["umount", "--lazy", str(path)], check=False)


def guest(rootfs: Path, *cmd: str, capture: bool = False) -> subprocess.CompletedProcess:
    """A command inside the arm64 userland with a clean environment; its pip trusts what the host's trusts."""
    env = {"PATH": f"{GUEST}/.venv/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
           "PIP_CERT": f"{GUEST}/host-ca.crt", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    print("+ [arm64]", " ".join(cmd), flush=True)
    return subprocess.run(["chroot", str(rootfs), *cmd], env=env, check=not capture, text=True,
                          capture_output=capture, timeout=3600)


def edge_install(rootfs: Path) -> None:
    """pyproject's base dependencies (wheels only: nothing compiles under emulation) once, then this source tree."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    stamp = rootfs / GUEST.relative_to("/") / "dependencies.txt"
    pip = f"{GUEST}/.venv/bin/pip"
    if not stamp.exists() or stamp.read_text().split() != dependencies:
        guest(rootfs, "python3", "-m", "venv", f"{GUEST}/.venv")
        guest(rootfs, pip, "install", "--only-binary=:all:", *dependencies)
        stamp.write_text("\n".join(dependencies) + "\n")
    source = rootfs / GUEST.relative_to("/") / "src"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(REPO / "earmark", source / "earmark", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, source / name)
    guest(rootfs, pip, "install", "--quiet", "--no-deps", "--force-reinstall", f"{GUEST}/src")


def check_inputs(work: Path, model: str | None, source: str | None) -> tuple[Path, Path]:
    """The model and WAV to compare: the given ones, or the tests' tone detector and a track of three tones."""
    if model and source:
        return Path(model), Path(source)
    if model or source:
        fail("give --model and --source together, or neither for the tests' tone detector.")
    import soundfile as sf

    sys.path.insert(0, str(REPO / "tests"))
    from runtime.models import SAMPLE_RATE, export_detector, tone_track

    wav = work / "tones.wav"
    sf.write(wav, tone_track(8.0, [(1.0, 2.5, 1000.0), (3.0, 5.2, 3000.0), (6.0, 7.0, 1000.0)]), SAMPLE_RATE)
    return export_detector(work / "tones.onnx", frame=True), wav


def events(stdout: str) -> list[dict]:
    """The event records of `earmark listen`'s JSON lines."""
    return [record for record in map(json.loads, stdout.splitlines()) if record.get("type") == "event"]


def compare(x86: list[dict], arm: list[dict]) -> bool:
    """Print one row per event pair; True when labels, onsets and offsets are equal and scores within tolerance."""
    print(f"\n{'label':<16}{'onset x86/arm64':>18}{'offset x86/arm64':>19}{'score x86/arm64':>20}  same")
    same = len(x86) == len(arm) and len(x86) > 0
    for i in range(max(len(x86), len(arm))):
        a, b = (x86[i] if i < len(x86) else {}), (arm[i] if i < len(arm) else {})
        ok = bool(a and b) and a["label"] == b["label"] and a["onset"] == b["onset"] and a["offset"] == b["offset"] \
            and abs(a["score"] - b["score"]) <= SCORE_TOLERANCE
        same &= ok
        cells = [f"{a.get(key, '-')}/{b.get(key, '-')}" for key in ("onset", "offset", "score")]
        print(f"{a.get('label') or b.get('label'):<16}{cells[0]:>18}{cells[1]:>19}{cells[2]:>20}  {'yes' if ok else 'NO'}")
    print(f"{len(x86)} events on x86, {len(arm)} on arm64 (scores within {SCORE_TOLERANCE})")
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(Path.home() / ".cache" / "earmark-arm64"), help="where the arm64 userland is cached")
    parser.add_argument("--mirror", default="http://deb.debian.org/debian")
    parser.add_argument("--model", help="an exported .onnx (default: the tests' tone detector, needs torch)")
    parser.add_argument("--source", help="the WAV both sides listen to (with --model)")
    args = parser.parse_args()
    preflight()
    root = Path(args.root).expanduser().resolve()
    rootfs = userland(root, args.mirror)
    work = rootfs / GUEST.relative_to("/") / "check"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    model, wav = check_inputs(work, args.model, args.source)
    for path in (model, wav):
        if path.parent != work:
            shutil.copyfile(path, work / path.name)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    x86 = subprocess.run([sys.executable, "-m", "earmark.cli", "listen", str(model), "--source", str(wav), "--fast"],
                         capture_output=True, text=True, env=env, timeout=600)
    if x86.returncode != 0:
        fail(f"listen on x86 failed:\n{x86.stderr}")
    with mounted(rootfs):
        edge_install(rootfs)
        versions = guest(rootfs, "python", "-c", VERSIONS, capture=True).stdout.strip()
        arm = guest(rootfs, "earmark", "listen", f"{GUEST}/check/{model.name}", "--source", f"{GUEST}/check/{wav.name}", "--fast", capture=True)
    if arm.returncode != 0:
        fail(f"listen in the arm64 userland failed:\n{arm.stderr}")
    host = subprocess.run([sys.executable, "-c", VERSIONS], capture_output=True, text=True, check=True).stdout.strip()
    print(f"\nmodel {model.name}, source {wav.name}\nx86:   {host}\narm64: {versions} (qemu-user)")
    if not compare(events(x86.stdout), events(arm.stdout)):
        fail("the arm64 events differ from x86 (or there were none to compare).")
    print("same events on x86 and arm64")


if __name__ == "__main__":
    main()
