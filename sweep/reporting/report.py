"""``sweep report OUT_DIR``: see the trade-off rather than read it.

For each upper bound (speed joined with quality) a speed-up versus score-loss scatter of its settings with the
Pareto front and the threshold drawn; a heat map of upper bounds across pipeline × scheduler × steps; and an
``index.html`` that shows them with the tables. Speed-map rows (quality unknown: on a machine without real
weights the speed map is all there is) get figures of their own, with no loss axis: per configuration every
setting's speed-up with its interval, first estimates, precise timings and timings settled below the leader
told apart, and a heat map of the fastest speed-up measured per pipeline × scheduler × steps.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from storage.bounds import Bound
from storage.measurements import QualityResult, SpeedResult
from storage.repository import Repository
from sweep.reporting.output import settings_text

SPEED_MAP_LABEL = "quality unknown: the fastest setting measured, not an upper bound"


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(loss, speed-up) points not beaten by another with less or equal loss and more speed-up, by loss."""
    front: list[tuple[float, float]] = []
    for loss, speedup in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or speedup > front[-1][1]:
            front.append((loss, speedup))
    return front


def _points(speeds: dict[str, SpeedResult], quality: dict[str, QualityResult]) -> list[tuple[float, float]]:
    return [(100 * q.score_loss, s.published) for key, s in speeds.items()  # type: ignore[misc]
            if s.usable and (q := quality.get(key)) is not None and q.status == "done" and q.score_loss is not None]


def _scatter(path: Path, bound: Bound, points: list[tuple[float, float]], max_loss: float) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if points:
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=18, alpha=0.7, label="settings")
        front = pareto_front(points)
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:orange", label="Pareto front")
    ax.axvline(100 * max_loss, color="tab:red", linestyle="--", label=f"threshold {100 * max_loss:g}%")
    if bound.settings and bound.speedup is not None and bound.score_loss is not None:
        ax.scatter([100 * bound.score_loss], [bound.speedup], marker="*", s=180, color="tab:green", zorder=5,
                   label=f"upper bound {bound.speedup:.2f}x")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xlabel("CLIP-score loss (%)")
    ax.set_ylabel("speed-up (x)")
    ax.set_title(f"{bound.speed_config.label}\nspeed: {bound.device}", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


SPEED_CHART_SETTINGS = 30
"""Settings drawn per speed-map chart (the fastest); the table under it lists every one."""
TIMING_STYLE = {  # how each kind of number is drawn: (marker, filled, label)
    "precise": ("o", True, "precise (paired, to its interval)"),
    "first estimate": ("o", False, "first estimate (one paired pass)"),
    "shared estimate": ("s", False, "shared estimate (measured in a row of another scheduler)"),
    "below leader": ("x", True, "settled below the leader (not precise)"),
}


def _speed_chart(path: Path, bound: Bound, speeds: dict[str, SpeedResult]) -> None:
    """Every setting's speed-up with its interval, fastest on top, each kind of timing drawn its own way."""
    import matplotlib.pyplot as plt

    done = sorted((s for s in speeds.values() if s.usable), key=lambda s: -(s.published or 0.0))[:SPEED_CHART_SETTINGS]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(done) + 1.5)), dpi=100)
    for kind, (marker, filled, label) in TIMING_STYLE.items():
        rows = [(i, s) for i, s in enumerate(done) if s.timing == kind]
        if not rows:
            continue
        xs = [float(s.published) for _, s in rows]  # type: ignore[arg-type]
        errors = [x * s.published_half_width for x, (_, s) in zip(xs, rows, strict=True)]
        ax.errorbar(xs, [i for i, _ in rows], xerr=errors, fmt=marker, markersize=6, capsize=2, label=label,
                    color="tab:blue" if kind != "below leader" else "tab:grey",
                    markerfacecolor=None if filled else "white")
    ax.set_yticks(range(len(done)), [settings_text(json.loads(s.setting_key)) for s in done], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_xlabel("speed-up (x), 95% interval")
    ax.set_title(f"{bound.speed_config.label}\nspeed map (quality unknown): {bound.device}", fontsize=10)
    if done:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _heatmap(path: Path, bounds: list[Bound], max_loss: float, title: str | None = None) -> None:
    import matplotlib.pyplot as plt

    pipelines = sorted({b.speed_config.pipeline for b in bounds})
    columns = sorted({(b.speed_config.scheduler, b.speed_config.steps) for b in bounds})
    grid = [[float("nan")] * len(columns) for _ in pipelines]
    for b in bounds:
        cell = (pipelines.index(b.speed_config.pipeline), columns.index((b.speed_config.scheduler, b.speed_config.steps)))
        value = grid[cell[0]][cell[1]]
        grid[cell[0]][cell[1]] = max(b.speedup or 0.0, value if value == value else 0.0)
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(columns) + 2), max(3, 0.7 * len(pipelines) + 2)), dpi=100)
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if value == value:  # not NaN
                ax.text(j, i, f"{value:.2f}x", ha="center", va="center", color="white", fontsize=9)
    ax.set_xticks(range(len(columns)), [f"{s.removesuffix('Scheduler')}\n{n} steps" for s, n in columns], fontsize=8)
    ax.set_yticks(range(len(pipelines)), pipelines)
    ax.set_title(title or f"Upper-bound speed-up, loss ≤ {100 * max_loss:g}% (best over environments)", fontsize=10)
    fig.colorbar(image, ax=ax, label="speed-up (x)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(repo: Repository, out: Path, max_loss: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    rows = repo.bounds.rows(max_loss)
    bounds = [b for b in rows if b.quality_known]
    speed_map = [b for b in rows if not b.quality_known]
    sections = []
    for i, b in enumerate(bounds):
        image = f"scatter-{i:03d}.png"
        speeds, quality = repo.bounds.speeds(b), repo.bounds.qualities(b) or {}
        _scatter(out / image, b, _points(speeds, quality), max_loss)
        sections.append((b, image, speeds, quality))
    if bounds:
        _heatmap(out / "heatmap.png", bounds, max_loss)
    map_sections = []
    for i, b in enumerate(speed_map):
        image = f"speed-{i:03d}.png"
        speeds = repo.bounds.speeds(b)
        _speed_chart(out / image, b, speeds)
        map_sections.append((b, image, speeds))
    if speed_map:
        _heatmap(out / "speed-heatmap.png", speed_map, max_loss,
                 "Fastest speed-up measured, quality unknown (best over environments): not upper bounds")
    evaluations = repo.evaluations.rows()
    (out / "index.html").write_text(_page(sections, bounds, speed_map, max_loss, evaluations, map_sections),
                                    encoding="utf-8")
    (out / "upper-bounds.json").write_text(json.dumps([b.as_row() for b in rows], indent=1, default=str) + "\n")
    return out / "index.html"


def _evaluations_section(evaluations: list[dict[str, object]]) -> str:
    """Graded solutions: per evaluation its verdict and speed-up, and pass rates by difficulty."""
    if not evaluations:
        return ""
    e = html.escape
    by: dict[str, list[bool]] = {}
    for r in evaluations:
        by.setdefault(str(r["difficulty"]), []).append(r["passed"] is True)
    rates = ", ".join(f"{d}: {sum(v)}/{len(v)} passed" for d, v in sorted(by.items()))

    def verdict(r: dict[str, object]) -> str:
        return {True: "passed", False: "failed", None: "speed only"}[r["passed"]] + (  # type: ignore[index]
            f" ({r['failure_reason']})" if r["failure_reason"] else "")

    def target(r: dict[str, object]) -> str:
        return "-" if r["target"] is None else f"{r['target']:g}x"

    def speedup(r: dict[str, object]) -> str:
        value = dict(r["result"]).get("actual_speedup")  # type: ignore[call-overload]
        return "-" if value is None else f"{value:.2f}x"

    rows = "".join(
        f"<tr><td>{e(str(r['task_id']))}</td><td>{e(str(r['difficulty']))}</td>"
        f"<td>{target(r)}</td>"
        f"<td>{speedup(r)}</td><td>{e(verdict(r))}</td><td>{e(str(r['device']))}</td>"
        f"<td>{e(str(r['solution_sha256'])[:12])}</td></tr>" for r in evaluations)
    return (f"<h2>Graded solutions</h2><p>{e(rates)}</p><table><tr><th>task</th><th>difficulty</th><th>target</th>"
            f"<th>speed-up</th><th>verdict</th><th>measured on</th><th>solution</th></tr>{rows}</table>")


def _page(
    sections: list[tuple[Bound, str, dict[str, SpeedResult], dict[str, QualityResult]]], bounds: list[Bound],
    speed_map: list[Bound], max_loss: float, evaluations: list[dict[str, object]] | None = None,
    map_sections: list[tuple[Bound, str, dict[str, SpeedResult]]] | None = None,
) -> str:
    e = html.escape

    def speedup(b: Bound) -> str:
        return "-" if b.speedup is None else f"{b.speedup:.2f}x"

    rows = "".join(
        f"<tr><td>{e(b.speed_config.pipeline)}</td><td>{e(b.speed_config.scheduler)}</td><td>{b.speed_config.steps}</td>"
        f"<td>{speedup(b)}</td><td>{e(b.best.timing or '-') if b.best else '-'}</td>"
        f"<td>{100 * (b.score_loss or 0.0):.2f}%</td><td>{e(settings_text(b.settings))}</td><td>{b.trials}</td>"
        f"<td>{e(b.device)}</td><td>{e(b.quality.describe()) if b.quality else ''}</td></tr>"
        for b in bounds
    )
    map_rows = "".join(
        f"<tr><td>{e(b.speed_config.pipeline)}</td><td>{e(b.speed_config.scheduler)}</td><td>{b.speed_config.steps}</td>"
        f"<td>{speedup(b)}</td><td>{e(b.best.timing or '-') if b.best else '-'}</td>"
        f"<td>{e(settings_text(b.settings))}</td><td>{e(b.device)}</td></tr>"
        for b in speed_map
    )
    map_parts = []
    for b, image, speeds in map_sections or []:
        done = sorted((s for s in speeds.values() if s.usable), key=lambda s: -(s.published or 0.0))
        trial_rows = "".join(
            f"<tr><td>{e(settings_text(json.loads(s.setting_key)))}</td><td>{s.published:.2f}x</td>"
            f"<td>±{100 * s.published_half_width:.1f}%</td><td>{e(s.timing or '-')}</td></tr>" for s in done)
        map_parts.append(
            f"<section><h3>{e(b.speed_config.label)} — {e(b.device)}</h3><img src='{image}' alt='speed-ups with their "
            f"intervals, {e(b.speed_config.label)}'><details><summary>{len(done)} settings</summary><table><tr>"
            f"<th>settings</th><th>speed-up</th><th>interval</th><th>timing</th></tr>{trial_rows}</table></details>"
            f"</section>")
    parts = []
    for b, image, speeds, quality in sections:
        done = sorted((s for s in speeds.values() if s.usable), key=lambda s: -(s.published or 0.0))
        trial_rows = "".join(
            f"<tr><td>{e(settings_text(json.loads(s.setting_key)))}</td><td>{s.published:.2f}x</td>"
            f"<td>{'' if (q := quality.get(s.setting_key)) is None or q.score_loss is None else f'{100 * q.score_loss:.2f}%'}"
            f"{'' if q is None or q.status == 'done' else ' (' + e(q.status) + ')'}</td></tr>" for s in done)
        parts.append(
            f"<section><h2>{e(b.speed_config.label)} — {e(b.device)}</h2><img src='{image}' alt='speed-up versus loss, "
            f"{e(b.speed_config.label)}'><details><summary>{len(done)} settings</summary><table><tr><th>settings</th>"
            f"<th>speed-up</th><th>loss</th></tr>{trial_rows}</table></details></section>")
    heat = "<img src='heatmap.png' alt='heat map of upper bounds'>" if bounds else "<p>No upper bound with known quality yet.</p>"
    speed_table = (f"<h2>Speed map</h2><p class='note'>{SPEED_MAP_LABEL}.</p>"
                   "<img src='speed-heatmap.png' alt='heat map of the fastest speed-up measured'>"
                   f"<table><tr><th>pipeline</th><th>scheduler</th><th>steps</th><th>fastest</th><th>timing</th>"
                   f"<th>settings</th><th>device</th></tr>{map_rows}</table>{''.join(map_parts)}") if speed_map else ""
    grades = _evaluations_section(evaluations or [])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sweep report</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px}}
.note{{color:#a33}}</style></head><body>
<h1>Upper-bound speed-ups (CLIP-score loss ≤ {100 * max_loss:g}%)</h1>
{heat}
<table><tr><th>pipeline</th><th>scheduler</th><th>steps</th><th>speed-up</th><th>timing</th><th>score loss</th>
<th>settings</th><th>settings timed</th><th>speed from</th><th>quality from</th></tr>{rows}</table>
{speed_table}
{''.join(parts)}
{grades}
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
