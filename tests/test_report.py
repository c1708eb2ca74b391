"""sweep report: figures and index.html, opened in headless Chromium to check that every image loads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from sweep.fronts.cli import app
from sweep.reporting.report import pareto_front
from tests.test_query import (
    _precise,
    _quality,
    _quality_baseline,
    _scope,
    _setting,
    _speed,
    _speed_baseline,
)
from tests.test_targets import _study


def _loaded(index: Path) -> tuple[int, int]:
    """(images on the page, images the browser decoded), read from the DOM after the load event."""
    browser = os.environ.get("SWEEP_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "Chromium is needed for this test: run the suite with scripts/test, which finds or installs it"
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom",
         index.resolve().as_uri()], capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    body = re.search(r'<body data-images="(\d+)" data-loaded="(\d+)"', dom)
    assert body, dom[:500]
    return int(body.group(1)), int(body.group(2))


def test_pareto_front() -> None:
    assert pareto_front([(0.5, 2.0), (0.1, 1.5), (0.3, 1.4), (0.9, 3.0), (0.6, 1.9)]) == [(0.1, 1.5), (0.5, 2.0), (0.9, 3.0)]


def test_report_page_shows_every_figure(sqlite_url: str, tmp_path: Path) -> None:
    repo, _ = _study(sqlite_url)
    other = _scope(repo, 25)
    _speed_baseline(repo, other)
    _quality_baseline(repo, other)
    _speed(repo, other, _setting(3), 2.4)
    _quality(repo, other, _setting(3), 0.01)
    speed_only = _scope(repo, 20, weights="random")  # the speed map: figures of its own, none with a loss axis
    _speed_baseline(repo, speed_only)
    _speed(repo, speed_only, _setting(3), 2.2)
    _speed(repo, speed_only, _setting(2), 1.7)
    _speed(repo, speed_only, _setting(5), 1.4)
    _precise(repo, speed_only, _setting(3), 2.1)
    _precise(repo, speed_only, _setting(5), 1.3, half=0.09, stop="below leader")
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(out), "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.png")) == [
        "heatmap.png", "scatter-000.png", "scatter-001.png", "speed-000.png", "speed-heatmap.png"]
    page = (out / "index.html").read_text()
    assert "12.00x" in page and "SD1.5 / DDIMScheduler / 50 steps" in page
    assert "Speed map" in page and "2.10x" in page
    # each number is labelled for what it is, beside its interval
    assert "<td>2.10x</td><td>±1.0%</td><td>precise</td>" in page
    assert "<td>1.70x</td><td>±5.0%</td><td>first estimate</td>" in page
    assert "<td>1.30x</td><td>±9.0%</td><td>below leader</td>" in page
    assert _loaded(out / "index.html") == (5, 5)
    (out / "scatter-001.png").unlink()  # the check sees a broken image
    assert _loaded(out / "index.html") == (5, 4)
