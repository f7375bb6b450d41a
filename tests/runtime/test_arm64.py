"""The ARM64 check for real: bench/arm64_check.py builds (or reuses) an arm64 Debian userland under qemu-user,
installs the edge install there from PyPI and compares its `listen --fast` events with x86's."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MISSING = [tool for tool in ("debootstrap", "qemu-aarch64-static", "update-binfmts") if shutil.which(tool) is None]


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(bool(MISSING), reason=f"{', '.join(MISSING)} not installed: apt-get install -y qemu-user-static debootstrap "
                    "binfmt-support (kept out of the Makefile's APT_PACKAGES: this test is slow-marked, CI does not run it)")
@pytest.mark.skipif(os.geteuid() != 0, reason="the ARM64 check chroots: run it as root")
def test_listen_gives_the_same_events_on_arm64_as_on_x86():
    check = subprocess.run([sys.executable, str(ROOT / "bench" / "arm64_check.py")], capture_output=True, text=True, cwd=ROOT)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    assert "arm64: aarch64 Python" in check.stdout and "same events on x86 and arm64" in check.stdout
    rows = [line for line in check.stdout.splitlines() if line.startswith(("tone_1k", "tone_3k"))]
    assert [row.split()[0] for row in rows] == ["tone_1k", "tone_3k", "tone_1k"] and all(row.endswith("yes") for row in rows)
