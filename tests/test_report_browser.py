"""The HTML report renders in a real browser: headless Chromium screenshot, not blank, plots drawn."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from cai_bootstrap.report import write_report
from cai_bootstrap.report.plots import PASS

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _screenshot(browser: str, page: Path, out: Path, width: int = 1400, height: int = 4000) -> None:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={width},{height}",
            page.as_uri(),
        ]
        subprocess.run(cmd, capture_output=True, timeout=180, check=False)


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install -y chromium)")
    from PIL import Image  # matplotlib depends on Pillow
    from test_report import build_run

    _, html_path = write_report(build_run(tmp_path))
    shot = tmp_path / "shot.png"
    _screenshot(browser, html_path, shot)
    assert shot.exists() and shot.stat().st_size > 10_000, "Chromium wrote no screenshot"

    img = Image.open(shot).convert("RGB")
    assert img.size == (1400, 4000)
    colours = img.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 500, f"screenshot looks blank: {len(colours)} distinct colours"
    white = sum(n for n, c in colours if min(c) >= 245)
    assert white / (img.width * img.height) < 0.9, "screenshot is almost all white"
    # The pass-green appears only inside the embedded plots: the PNG data URIs were decoded and drawn.
    target = tuple(int(PASS[i : i + 2], 16) for i in (1, 3, 5))
    green = sum(n for n, c in colours if all(abs(a - b) <= 6 for a, b in zip(c, target, strict=True)))
    assert green > 2_000, f"plot colours missing from the screenshot ({green} px of {PASS})"
