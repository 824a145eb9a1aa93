"""The demo's and the evaluation's index.html in a real headless browser (Debian's chromium):
the tables render, every annotated frame and plot loads (naturalWidth > 0, counted by the page
itself) and the screenshot shows pictures, not a blank page."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import REPO

pytestmark = pytest.mark.integration


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not installed: this test renders index.html in a real headless "
                "browser. Install Debian's chromium (`apt-get install -y chromium`).")


def _browser(*args: str) -> subprocess.CompletedProcess:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "vlm_node.cli.main", "demo", "--frames", "2",
                           "--output", str(out), "--domain-id", str(100 + os.getpid() % 100)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "index.html"


def test_demo_page_renders_tables_and_loads_every_frame(demo_page):
    out = demo_page.parent
    assert sorted(p.name for p in out.glob("*_annotated.jpg")) == [
        "00_front_annotated.jpg", "01_rear_annotated.jpg"]
    dom = _browser("--dump-dom", demo_page.as_uri())
    assert dom.returncode == 0, dom.stderr
    html = dom.stdout
    assert _loaded(html) == (2, 2)  # both frames decoded
    assert "2 of 2 images loaded" in html
    # the per-frame table: one row per frame with what was read and the scene's source
    rows = re.findall(r"<tr><td>(\d)</td><td>(front|rear)</td>", html)
    assert rows == [("0", "front"), ("1", "rear")]
    assert "speed_limit 50 km/h" in html and "[detector] Detector:" in html


def test_demo_page_screenshot_shows_the_pictures(demo_page, tmp_path):
    shot = tmp_path / "page.png"
    run = _browser(f"--screenshot={shot}", "--window-size=1400,1400", demo_page.as_uri())
    assert run.returncode == 0 and shot.is_file(), run.stderr
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1400, 1400)
    non_white = np.any(image < 235, axis=2)
    # two 480-px-wide frames (about 480x360 each) are on screen: well over a tenth of the page
    # is picture; tables and text alone cover a few percent
    assert non_white.mean() > 0.12, non_white.mean()
    # and they are photos: many distinct colours, not flat boxes
    colours = np.unique((image[non_white] // 16).reshape(-1, 3), axis=0)
    assert len(colours) > 500


def _loaded(html: str) -> tuple[int, int]:
    loaded = re.search(r'data-images-loaded="(\d+)"', html)
    total = re.search(r'data-images-total="(\d+)"', html)
    assert loaded and total, "the page's load script did not run"
    return int(loaded.group(1)), int(total.group(1))


def test_eval_page_loads_frames_and_plots(tmp_path):
    from vlm_node.tools.sample_bag import write_sample_bag

    write_sample_bag(tmp_path / "bag", frames=3, cameras=1, seconds=1.0)
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "vlm_node.cli.main", "eval",
                           str(tmp_path / "bag"), "--backend", "ocr", "--output", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dom = _browser("--dump-dom", (out / "index.html").as_uri())
    assert dom.returncode == 0, dom.stderr
    assert _loaded(dom.stdout) == (3 + 3, 3 + 3)  # three frames, three plots
    assert len(re.findall(r"<tr><td>\d+</td><td>front</td>", dom.stdout)) == 3
    assert "speed value accuracy" in dom.stdout
