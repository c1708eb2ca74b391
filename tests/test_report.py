"""sweep report: figures and index.html, opened in headless Chromium to check that every image loads."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from sweep.cli import app
from sweep.report import pareto_front
from tests.test_query import _scope, _setting, _trial
from tests.test_targets import _study


def _loaded(index: Path) -> tuple[int, int]:
    """(images on the page, images the browser decoded), read from the DOM after the load event."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "Chromium is needed for this test (Debian: apt-get install chromium); .ci/run installs it"
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
    repo.save_baseline(other, time=1.0, time_spread=0.0, clip_score=30.0, image_digests=["d"], worker="t")
    repo.save_trial(other, _trial(_setting(3), 2.4, 0.01))
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(out), "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.png")) == ["heatmap.png", "scatter-000.png", "scatter-001.png"]
    page = (out / "index.html").read_text()
    assert "12.00x" in page and "SD1.5 / DDIMScheduler / 50 steps" in page
    assert _loaded(out / "index.html") == (3, 3)
    (out / "scatter-001.png").unlink()  # the check sees a broken image
    assert _loaded(out / "index.html") == (3, 2)
