"""``sweep report OUT_DIR``: see the trade-off rather than read it.

For each base configuration a speed-up versus score-loss scatter of its trials with the Pareto front and the
threshold drawn; a heat map of upper bounds across pipeline × scheduler × steps; and an ``index.html`` that
shows them with the tables. Random-weight results are labelled as such on every figure and table.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path

from sqlalchemy import select

from storage.models import TrialRow
from storage.repository import Repository, UpperBound, published_speedup
from sweep.output import settings_text

RANDOM_LABEL = "random weights: speed-ups real, CLIP scores not"


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(loss, speed-up) points not beaten by another with less or equal loss and more speed-up, by loss."""
    front: list[tuple[float, float]] = []
    for loss, speedup in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or speedup > front[-1][1]:
            front.append((loss, speedup))
    return front


def _scatter(path: Path, bound: UpperBound, trials: list[TrialRow], max_loss: float) -> None:
    import matplotlib.pyplot as plt

    points = [(100 * t.score_loss, published_speedup(t)) for t in trials
              if t.status == "done" and t.score_loss is not None and t.speedup is not None]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if points:
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=18, alpha=0.7, label="trials")
        front = pareto_front(points)
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:orange", label="Pareto front")
    ax.axvline(100 * max_loss, color="tab:red", linestyle="--", label=f"threshold {100 * max_loss:g}%")
    if bound.settings:
        ax.scatter([100 * bound.score_loss], [bound.speedup], marker="*", s=180, color="tab:green", zorder=5,
                   label=f"upper bound {bound.speedup:.2f}x")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xlabel("CLIP-score loss (%)")
    ax.set_ylabel("speed-up (x)")
    title = f"{bound.base.pipeline} / {bound.base.scheduler} / {bound.base.steps} steps"
    ax.set_title(title + ("" if bound.quality_meaningful else f"\n({RANDOM_LABEL})"), fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _heatmap(path: Path, bounds: list[UpperBound], max_loss: float) -> None:
    import matplotlib.pyplot as plt

    pipelines = sorted({b.base.pipeline for b in bounds})
    columns = sorted({(b.base.scheduler, b.base.steps) for b in bounds})
    grid = [[float("nan")] * len(columns) for _ in pipelines]
    for b in bounds:
        grid[pipelines.index(b.base.pipeline)][columns.index((b.base.scheduler, b.base.steps))] = b.speedup
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(columns) + 2), max(3, 0.7 * len(pipelines) + 2)), dpi=100)
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if value == value:  # not NaN
                ax.text(j, i, f"{value:.2f}x", ha="center", va="center", color="white", fontsize=9)
    ax.set_xticks(range(len(columns)), [f"{s.removesuffix('Scheduler')}\n{n} steps" for s, n in columns], fontsize=8)
    ax.set_yticks(range(len(pipelines)), pipelines)
    random = any(not b.quality_meaningful for b in bounds)
    ax.set_title(f"Upper-bound speed-up, loss ≤ {100 * max_loss:g}%" + (f"\n({RANDOM_LABEL})" if random else ""), fontsize=10)
    fig.colorbar(image, ax=ax, label="speed-up (x)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(repo: Repository, out: Path, max_loss: float, include_random: bool = True) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    bounds = [b for b in repo.upper_bounds(max_loss) if include_random or b.quality_meaningful]
    with repo.session() as s:
        by_scope: dict[tuple[int, int, int], list[TrialRow]] = defaultdict(list)
        for t in s.scalars(select(TrialRow)):
            by_scope[(t.base_config_id, t.environment_id, t.protocol_id)].append(t)
    sections = []
    for i, b in enumerate(bounds):
        assert b.scope is not None
        image = f"scatter-{i:03d}.png"
        trials = by_scope[(b.scope.base_config_id, b.scope.environment_id, b.scope.protocol_id)]
        _scatter(out / image, b, trials, max_loss)
        sections.append((b, image, trials))
    if bounds:
        _heatmap(out / "heatmap.png", bounds, max_loss)
    (out / "index.html").write_text(_page(sections, bounds, max_loss), encoding="utf-8")
    (out / "upper-bounds.json").write_text(json.dumps([b.as_row() for b in bounds], indent=1, default=str) + "\n")
    return out / "index.html"


def _page(sections: list[tuple[UpperBound, str, list[TrialRow]]], bounds: list[UpperBound], max_loss: float) -> str:
    e = html.escape
    random = any(not b.quality_meaningful for b in bounds)
    rows = "".join(
        f"<tr><td>{e(b.base.pipeline)}{'' if b.quality_meaningful else ' *'}</td><td>{e(b.base.scheduler)}</td>"
        f"<td>{b.base.steps}</td><td>{b.speedup:.2f}x</td><td>{'yes' if b.confirmed else 'no'}</td>"
        f"<td>{100 * b.score_loss:.2f}%</td><td>{e(settings_text(b.settings))}</td><td>{b.trials}</td><td>{e(b.device)}</td></tr>"
        for b in bounds
    )
    parts = []
    for b, image, trials in sections:
        done = sorted((t for t in trials if t.status == "done" and t.speedup is not None), key=lambda t: -published_speedup(t))
        trial_rows = "".join(
            f"<tr><td>{e(settings_text(t.settings))}</td><td>{published_speedup(t):.2f}x</td>"
            f"<td>{'' if t.score_loss is None else f'{100 * t.score_loss:.2f}%'}</td></tr>" for t in done)
        parts.append(
            f"<section><h2>{e(b.base.label)}</h2><img src='{image}' alt='speed-up versus loss, {e(b.base.label)}'>"
            f"<details><summary>{len(done)} trials</summary><table><tr><th>settings</th><th>speed-up</th><th>loss</th></tr>"
            f"{trial_rows}</table></details></section>")
    note = f"<p class='note'>* {RANDOM_LABEL}.</p>" if random else ""
    heat = "<img src='heatmap.png' alt='heat map of upper bounds'>" if bounds else "<p>No measurements yet.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sweep report</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px}}
.note{{color:#a33}}</style></head><body>
<h1>Upper-bound speed-ups (CLIP-score loss ≤ {100 * max_loss:g}%)</h1>{note}
{heat}
<table><tr><th>pipeline</th><th>scheduler</th><th>steps</th><th>speed-up</th><th>confirmed</th><th>score loss</th>
<th>settings</th><th>trials</th><th>device</th></tr>{rows}</table>
{''.join(parts)}
<script>
// Marks each image once the browser has decoded it, so a headless check can read the result from the DOM.
window.addEventListener('load', () => {{
  const imgs = [...document.images];
  document.body.dataset.images = imgs.length;
  document.body.dataset.loaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
}});
</script>
</body></html>
"""
