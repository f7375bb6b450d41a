"""The README's screenshot of `earmark listen --ui`: audio played in real time through stdin, the page captured in headless Chromium.

    python bench/listen_ui_screenshot.py [--model M.onnx --audio A.wav] [--out docs/img/listen-ui.png]

Without --model it exports the tests' tone detector (1 kHz and 3 kHz tones; needs torch) and plays synthetic tones
over noise. Needs chromium and chromium-driver (Debian packages); uses the tests' WebDriver client (tests/runtime/browser.py).
"""

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from runtime.browser import Chromium  # noqa: E402
from runtime.services import Daemon, free_port  # noqa: E402

RATE = 16000


def play(daemon: Daemon, audio: np.ndarray) -> None:
    """Feed ``audio`` at real-time pace, 0.1 s at a time."""
    block = RATE // 10
    for start in range(0, audio.size, block):
        daemon.feed(audio[start:start + block])
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an exported .onnx (default: the tests' tone detector)")
    parser.add_argument("--audio", help="a sound file to play (default: synthetic tones)")
    parser.add_argument("--out", default="docs/img/listen-ui.png")
    parser.add_argument("--at", type=float, default=8.8, help="seconds into the audio when the page is captured")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="earmark-ui-"))
    if args.model:
        model = args.model
    else:
        from runtime.models import export_detector

        model = export_detector(folder / "tones.onnx", frame=True, hop=0.1, thresholds={"tone_3k": 0.7})
    if args.audio:
        from earmark.audio.io import load_audio

        audio = load_audio(args.audio, RATE)
    else:
        from runtime.models import tone_track

        audio = tone_track(12.0, [(1.0, 2.5, 1000.0), (3.0, 3.6, 3000.0), (5.0, 6.0, 1000.0), (7.5, 9.0, 1000.0),
                                  (8.0, 9.5, 3000.0), (10.2, 10.8, 3000.0)], noise=0.02)
    port = free_port()
    daemon = Daemon([model, "--source", "-", "--rate", str(RATE), "--status-every", "1", "--ui", f"127.0.0.1:{port}",
                     "--min-duration", "0.2"], stdin=subprocess.PIPE)
    browser = None
    try:
        daemon.wait_for(lambda r: r["type"] == "status")
        browser = Chromium(width=1100, height=860)
        browser.open(f"http://127.0.0.1:{port}/")
        browser.wait_for("return document.getElementById('connection').textContent === 'live'")
        player = threading.Thread(target=play, args=(daemon, audio))
        player.start()
        time.sleep(args.at)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        browser.screenshot(Path(args.out))
        player.join()
        print(f"wrote {args.out} ({sum(r['type'] == 'event' for r in daemon.seen)} events on the page)")
    finally:
        if browser:
            browser.close()
        daemon.stop()


if __name__ == "__main__":
    main()
