"""`earmark listen --ui`: the live page in headless Chromium (chromedriver, WebDriver over HTTP) shows a played event."""

import contextlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from earmark.runtime import live

from .browser import Chromium, chromium_paths
from .models import SPEC, export_causal_detector, export_detector, tone_track
from .services import Daemon, free_port

pytestmark = pytest.mark.skipif(chromium_paths() is None, reason="chromium and chromium-driver are not installed (make test installs them)")

EVENT_ROW = "const r = document.querySelector('#events tbody tr[data-label=\"tone_1k\"]'); return r && r.innerText;"
LIT_PIXELS = """const c = document.getElementById('spectrogram');
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let lit = 0;
for (let i = 3; i < d.length; i += 4) lit += d[i] > 0;
return lit;"""


@contextlib.contextmanager
def _watching(daemon: Daemon, port: int):
    """Headless Chromium on the daemon's live page, connected; at the end both close (the daemon cleanly)."""
    browser = None
    try:
        daemon.wait_for(lambda r: r["type"] == "status")
        browser = Chromium()
        browser.open(f"http://127.0.0.1:{port}/")
        browser.wait_for("return document.getElementById('connection').textContent === 'live'")
        yield browser
    finally:
        if browser:
            browser.close()
        assert daemon.stop() == 0


@pytest.fixture
def model(tmp_path):
    return export_detector(tmp_path / "tones.onnx", frame=True, hop=0.1, thresholds={"tone_3k": 0.8})


@pytest.mark.parametrize("source", ["stdin", "mic"])
def test_live_page_shows_spectrogram_scores_status_and_a_played_event(request, tmp_path, model, source):
    port = free_port()
    common = ["--status-every", "0.3", "--ui", f"127.0.0.1:{port}"]
    if source == "mic":
        pulse = request.getfixturevalue("pulse")
        daemon = Daemon([model, "--source", "mic", "--min-duration", "0.3", *common], env=pulse.env)
    else:
        daemon = Daemon([model, "--source", "-", "--rate", "16000", *common], stdin=subprocess.PIPE)
    with _watching(daemon, port) as browser:
        names = browser.js("return [...document.querySelectorAll('#scores .row .name')].map(n => n.textContent)")
        assert names == ["tone_1k", "tone_3k"]
        assert browser.js("return document.getElementById('scene-section').hidden")  # no scene head
        assert browser.js(EVENT_ROW) is None  # nothing heard yet
        if source == "mic":
            daemon.wait_for(lambda r: r["type"] == "status" and r["audio_seconds"] > 0.5, timeout=30)  # the stream is flowing
            wav = tmp_path / "tone.wav"
            sf.write(wav, tone_track(1.2, [(0.1, 1.1, 1000.0)], rate=48000), 48000)
            pulse.play(wav)
        else:
            daemon.feed(tone_track(3.0, [(1.0, 2.0, 1000.0)]))
        row = browser.wait_for(EVENT_ROW, timeout=30)
        assert "tone_1k" in row
        assert browser.wait_for(LIT_PIXELS) > 0  # spectrogram columns were drawn
        thresholds = browser.js("return [...document.querySelectorAll('#scores .threshold')].map(t => t.style.left)")
        assert thresholds == ["50%", "80%"]  # the default and the calibrated threshold, drawn against the scores
        audio = browser.wait_for(  # a status record after the audio arrived (the page first shows the one from before)
            "const d = document.querySelector('#status dd[data-name=\"audio\"]'); return d && parseFloat(d.textContent) > 0 && d.textContent")
        assert audio.endswith(" s") and float(audio.split()[0]) > 0
        assert browser.js("return document.querySelector('#status dd[data-name=\"sink stdout\"]').textContent").endswith("0 dropped")


OPEN_ROWS = "return [...document.querySelectorAll('#events tbody tr[data-label=\"tone_1k\"]')].map(r => [r.dataset.open || '', r.innerText])"


def test_live_page_shows_an_event_when_it_starts_and_counts_what_it_sent(tmp_path, model):
    port = free_port()
    daemon = Daemon([model, "--source", "-", "--rate", "16000", "--status-every", "0.3", "--ui", f"127.0.0.1:{port}"],
                    stdin=subprocess.PIPE)
    with _watching(daemon, port) as browser:
        daemon.feed(tone_track(3.0, [(1.0, 3.0, 1000.0)]))  # still sounding when the audio so far ends
        rows = browser.wait_for(OPEN_ROWS.replace("return [", "const rows = [") + "; return rows.length && rows;", timeout=30)
        assert len(rows) == 1 and rows[0][0] == "on" and "sounding" in rows[0][1]  # shown at its start, before any event record
        assert not any(r["type"] == "event" for r in daemon.seen)
        daemon.feed(tone_track(1.5, []))  # it ends: the same row is filled in
        rows = browser.wait_for(OPEN_ROWS.replace("return [", "const rows = [") + "; return rows.length && !rows[0][0] && rows;")
        assert len(rows) == 1 and "sounding" not in rows[0][1] and " s" in rows[0][1]
        sent = browser.wait_for("const d = document.querySelector('#status dd[data-name=\"sink ui\"]'); "
                                "return d && parseInt(d.textContent) > 0 && d.textContent")
        assert sent.endswith("0 dropped")  # what the page itself received is counted, not \"0 sent\"


def test_a_late_browser_gets_a_full_canvas_of_spectrogram_whatever_the_frame_hop(tmp_path):
    from earmark.runtime.live import CANVAS_FRAMES

    assert f'<canvas id="spectrogram" width="{CANVAS_FRAMES}"' in (Path(live.__file__).with_name("static") / "index.html").read_text()
    model = export_detector(tmp_path / "tones.onnx", frame=True, hop=0.1, spec=SPEC.replace(hop_length=320))  # 20 ms frames: 16 s wide
    port = free_port()
    daemon = Daemon([model, "--source", "-", "--rate", "16000", "--status-every", "0.3", "--ui", f"127.0.0.1:{port}"],
                    stdin=subprocess.PIPE)
    daemon.feed(tone_track(20.0, [(t, t + 0.5, 1000.0) for t in range(0, 20, 2)], noise=0.05))
    daemon.wait_for(lambda r: r["type"] == "status" and r["audio_seconds"] >= 19.5)
    with _watching(daemon, port) as browser:  # it connects after the 20 s were heard
        left = LIT_PIXELS.replace("getImageData(0, 0, c.width, c.height)", "getImageData(0, 0, 4, c.height)")
        assert browser.wait_for(left) == 4 * 160  # the canvas's left edge is drawn: history fills all of it


def test_live_page_of_a_stateful_model_shows_its_event_spectrogram_and_state_resets(tmp_path):
    port = free_port()
    daemon = Daemon([export_causal_detector(tmp_path / "causal.onnx"), "--source", "-", "--rate", "16000", "--status-every", "0.3",
                     "--ui", f"127.0.0.1:{port}"], stdin=subprocess.PIPE)
    with _watching(daemon, port) as browser:
        daemon.feed(np.concatenate([tone_track(3.0, [(1.0, 2.0, 1000.0)]), np.zeros(16000), tone_track(1.0, [])]))  # 1 s muted
        assert "tone_1k" in browser.wait_for(EVENT_ROW, timeout=30)
        assert browser.wait_for(LIT_PIXELS) > 0
        assert browser.wait_for("const d = document.querySelector('#status dd[data-name=\"state resets\"]');"
                                "return d && d.textContent === '1'", timeout=30)


def test_live_page_of_a_two_head_model_shows_the_scene_beside_the_events(tmp_path):
    model = export_detector(tmp_path / "two-heads.onnx", frame=True, hop=0.1, scenes=True)
    port = free_port()
    daemon = Daemon([model, "--source", "-", "--rate", "16000", "--status-every", "0.3", "--ui", f"127.0.0.1:{port}"],
                    stdin=subprocess.PIPE)
    top_scene = "const r = document.querySelector('#scene-scores .row.top'); return r && r.dataset.label === '{}';".format
    scene_row = "const r = document.querySelector('#events tbody tr[data-type=\"scene\"][data-label=\"tonal\"]'); return r && r.innerText;"
    with _watching(daemon, port) as browser:
        assert not browser.js("return document.getElementById('scene-section').hidden")
        assert browser.js("return [...document.querySelectorAll('#scene-scores .row .name')].map(n => n.textContent)") == ["quiet", "tonal"]
        assert browser.js("return [...document.querySelectorAll('#scores .row .name')].map(n => n.textContent)") == ["tone_1k", "tone_3k"]
        daemon.feed(tone_track(4.5, [(1.0, 4.5, 1000.0)]))  # the tone is still sounding when this chunk ends
        assert browser.wait_for(top_scene("tonal"))
        assert "scene" in browser.wait_for(scene_row)  # the scene head's record, held 2 s, in the log
        assert "sounding" in browser.wait_for(EVENT_ROW)  # shown from its start; its record comes when the tone ends
        daemon.feed(tone_track(1.5, []))
        assert "tone_1k" in browser.wait_for(EVENT_ROW.replace("return r && r.innerText", "return r && !r.dataset.open && r.innerText"))
        assert browser.wait_for(top_scene("quiet"))


@pytest.mark.slow
def test_the_readme_screenshot_script_captures_the_page(tmp_path):
    script = Path(__file__).resolve().parents[2] / "bench" / "listen_ui_screenshot.py"
    run = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "ui.png"), "--at", "3"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "ui.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "events on the page" in run.stdout
