"""The speed model: exact on times that follow its law, silent where the stored times do not determine a
prediction, and, on real tiny pipelines (CPU), a price for a row not measured yet that its measurement then
checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from search_space.setting import AccelSetting
from storage import Repository
from storage.measurements import SpeedObservation
from storage.models import SpeedConfigRow, SpeedTrialRow
from sweep.accelerators import describe
from sweep.fronts.cli import app
from sweep.measurement.speed_model import SpeedModel, features

runner = CliRunner()
FAMILY = (1, "SD1.5", 512, 512, "float16", 1)


def observation(scheduler: str, steps: int, settings: dict[str, dict[str, object]], time: float) -> SpeedObservation:
    return SpeedObservation(1, "SD1.5", 512, 512, "float16", 1, scheduler, steps, settings, time, "precise")


def law(scheduler: str, steps: int, settings: dict[str, dict[str, object]]) -> float:
    """A machine whose costs are known: 0.2 s fixed, 25 ms a DDIM step, 27 ms a UniPC step, a DeepCache partial
    step 18 ms cheaper than a full one, ToMe 0.5 saves 6 ms a full step and 2 ms a partial one."""
    counts = features(scheduler, steps, settings)
    assert counts is not None
    costs = {"fixed": 0.2, "step[DDIMScheduler]": 0.025, "step[UniPCMultistepScheduler]": 0.027,
             "deepcache.partial.b0": -0.018}
    tome = next((k for k in counts if k.startswith("tome(")), None)
    if tome is not None:
        base = tome.split("@")[0]
        costs.update({base: -0.006, f"{base}@full": -0.006, f"{base}@deepcache.partial.b0": -0.002})
    return sum(v * costs[k] for k, v in counts.items())


DC = {"deepcache": {"cache_interval": 3, "cache_branch_id": 0}}
DC5 = {"deepcache": {"cache_interval": 5, "cache_branch_id": 0}}
TOME = {"tome": {"ratio": 0.5}}
BOTH = {**DC, **TOME}


def test_times_that_follow_the_law_are_predicted_exactly_where_they_are_determined() -> None:
    stored = [observation(s, n, x, law(s, n, x)) for s, n, x in [
        ("DDIMScheduler", 20, {}), ("DDIMScheduler", 50, {}), ("DDIMScheduler", 20, DC), ("DDIMScheduler", 20, TOME),
        ("DDIMScheduler", 50, BOTH), ("UniPCMultistepScheduler", 25, {})]]
    model = SpeedModel(stored)
    for scheduler, steps, setting in [("DDIMScheduler", 30, DC5), ("UniPCMultistepScheduler", 25, DC),
                                      ("UniPCMultistepScheduler", 50, BOTH), ("DDIMScheduler", 25, TOME)]:
        predicted = model.predict(FAMILY, scheduler, steps, AccelSetting.of(setting))
        assert predicted == pytest.approx(law(scheduler, steps, setting), rel=1e-9), (scheduler, steps, setting)
    # not determined: ToMe's full and partial steps mixed otherwise than in the one combination measured, a scheduler
    # never measured, a method never measured, another family, T-GATE with DeepCache
    assert model.predict(FAMILY, "DDIMScheduler", 40, AccelSetting.of(BOTH)) is None
    assert model.predict(FAMILY, "DPMSolverMultistepScheduler", 25, AccelSetting.of({})) is None
    assert model.predict(FAMILY, "DDIMScheduler", 20, AccelSetting.of({"tome": {"ratio": 0.25}})) is None
    assert model.predict((2, *FAMILY[1:]), "DDIMScheduler", 20, AccelSetting.of({})) is None  # type: ignore[arg-type]
    assert features("DDIMScheduler", 20, {"tgate": {}, "deepcache": {}}) is None
    assert features("DDIMScheduler", 20, {"cache_dit": {}}) is None  # its work depends on the activations


def test_one_step_count_cannot_tell_the_fixed_cost_from_the_steps() -> None:
    stored = [observation("DDIMScheduler", 20, x, law("DDIMScheduler", 20, x)) for x in ({}, DC)]
    model = SpeedModel(stored)
    assert model.predict(FAMILY, "DDIMScheduler", 20, AccelSetting.of(DC5)) == pytest.approx(law("DDIMScheduler", 20, DC5))
    assert model.predict(FAMILY, "DDIMScheduler", 50, AccelSetting.of({})) is None  # fixed and per-step apart: unknown
    held_out = stored[1]
    assert model.leave_one_out(held_out) is None  # without it, nothing says what a partial step costs


SMALL = """
name = "model-{name}"
combine = false
[protocol]
prompts = "bundled"
num_prompts = 1
timing_prompts = 1
scorer = "sweep-tiny-clip"
scorer_pretrained = "random"
warmup_cap = 3
min_pairs = 4
max_pairs = 6
target_half_width = 0.05
[[base]]
pipelines = ["tiny-sd-a"]
schedulers = [{schedulers}]
steps = [{steps}]
resolutions = [[64, 64]]
dtype = "float32"
batch_size = 1
[accelerators.deepcache]
cache_interval = [2, 3]
cache_branch_id = [0]
"""


def test_a_row_not_measured_yet_is_priced_and_its_measurement_checks_the_price(sqlite_url: str, tmp_path: Path) -> None:
    measured, fresh = tmp_path / "measured.toml", tmp_path / "fresh.toml"
    measured.write_text(SMALL.format(name="a", schedulers='"DDIMScheduler"', steps="4, 12"), encoding="utf-8")
    fresh.write_text(SMALL.format(name="b", schedulers='"DDIMScheduler", "UniPCMultistepScheduler"', steps="8"),
                     encoding="utf-8")
    before = runner.invoke(app, ["space", "show", str(fresh), "--estimate", "--db", sqlite_url, "--format", "json"])
    assert before.exit_code == 0, before.output
    assert [r["note"].startswith("no model yet") for r in json.loads(before.stdout)] == [True, True]

    run = runner.invoke(app, ["upbound", str(measured), "--db", sqlite_url, "--device", "cpu", "--quiet"])
    assert run.exit_code == 0, run.output
    priced = runner.invoke(app, ["space", "show", str(fresh), "--estimate", "--db", sqlite_url, "--format", "json"])
    assert priced.exit_code == 0, priced.output
    ddim, unipc = json.loads(priced.stdout)
    assert ddim["predicted"] == ddim["settings"] == 2 and ddim["study_s"] > 0 and ddim["baseline_s"] > 0
    assert unipc["predicted"] == 0 and unipc["note"].startswith("no model yet")  # UniPC's own step: not measured

    run = runner.invoke(app, ["upbound", str(fresh), "--db", sqlite_url, "--device", "cpu", "--quiet"])
    assert run.exit_code == 0, run.output
    # the grid measured the row's settings fastest predicted first
    with Repository(sqlite_url).session() as session:
        order = session.scalars(select(SpeedTrialRow.setting_key).join(
            SpeedConfigRow, SpeedConfigRow.id == SpeedTrialRow.speed_config_id).where(
            SpeedConfigRow.steps == 8, SpeedConfigRow.scheduler == "DDIMScheduler").order_by(SpeedTrialRow.id)).all()
    predicted = ddim["predictions"]
    assert [describe(AccelSetting.from_key(k)) for k in order] == sorted(predicted, key=predicted.__getitem__)
    assert predicted[describe(AccelSetting.from_key(order[0]))] < predicted[describe(AccelSetting.from_key(order[1]))]
    checked = runner.invoke(app, ["space", "show", str(fresh), "--estimate", "--db", sqlite_url, "--format", "json"])
    ddim_after = json.loads(checked.stdout)[0]
    measured_s = {c["setting"]: c["measured_s"] for c in ddim_after["checks"]}
    assert len(measured_s) == 2
    # the price made before the row was measured, against what was then measured (a shared 2-core CPU: loose)
    ratio = ddim["baseline_s"] / ddim_after["measured_baseline_s"]
    assert 0.5 < ratio < 2.0, (ddim, ddim_after)
    for check in ddim_after["checks"]:
        assert check["predicted_s"] is not None and 0.4 < check["predicted_s"] / check["measured_s"] < 2.5, check


def test_a_price_counts_the_images_the_runner_then_generates(sqlite_url: str, tmp_path: Path) -> None:
    """``space show --estimate`` prices a row as the runner measures it: a speed-only row of several timing batches
    checks its first estimates (a warm-up run, the setting over the timing set, the baseline over one batch twice),
    a row of another scheduler with the same denoiser calls shares them (no image). Every image the run then
    generates is accounted for by the price's counts, a check that drifted (then paired) and the stored precise
    timings' rounds."""
    import tomllib

    from sweep.app import estimate_space
    from sweep.study.catalogue import parse_space
    from sweep.study.runner import Runner
    from tests.conftest import precise_images, tiny_speed_space

    def space(name: str, steps: str):  # type: ignore[no-untyped-def]
        text = tiny_speed_space(name, schedulers='"DDIMScheduler", "UniPCMultistepScheduler"', steps=steps,
                                cache_intervals="2, 3")
        text = text.replace("num_prompts = 1", "num_prompts = 3").replace("timing_prompts = 1", "timing_prompts = 3")
        return parse_space(tomllib.loads(text), name)

    Runner(Repository(sqlite_url), "cpu").run(space("measured", "3, 6"), canary=False)
    fresh = space("fresh", "4")
    ddim, unipc = estimate_space(fresh, sqlite_url)
    assert (ddim["scheduler"], unipc["scheduler"]) == ("DDIMScheduler", "UniPCMultistepScheduler")
    assert ddim["first_estimates"] == "checked" and unipc["first_estimates"] == "shared"
    # warm-up (warmup_cap = 2) and 3 timing images; per setting 1 + 3 + 2 images; none shared
    assert ddim["study_images"]["baseline"] == unipc["study_images"]["baseline"] == 5
    assert ddim["study_images"]["first_estimates"] == 2 * 6 and unipc["study_images"]["first_estimates"] == 0
    # DeepCache 2 and 3 make the same steps at 4 (two full, two partial): both contenders, timed together (confirm_top
    # 3) for max(min_pairs 2, 3 batches) = 3 rounds of a baseline batch and both settings, after 2 warm-ups each
    assert ddim["study_images"]["precise"] == unipc["study_images"]["precise"] == 3 * (1 + 2) + 2 * 2
    assert unipc["study_s"] < ddim["study_s"]

    summary = Runner(Repository(sqlite_url), "cpu").run(fresh, canary=False)
    with Repository(sqlite_url).session() as s:
        rows = s.execute(select(SpeedConfigRow.scheduler, SpeedTrialRow).join(
            SpeedConfigRow, SpeedConfigRow.id == SpeedTrialRow.speed_config_id).where(
            SpeedConfigRow.steps == 4).order_by(SpeedTrialRow.id)).all()
    trials = [t for _, t in rows]
    sources = [t.first_source for scheduler, t in rows if scheduler == "DDIMScheduler"]
    assert [t.first_source for scheduler, t in rows if scheduler != "DDIMScheduler"] == ["shared from DDIMScheduler"] * 2
    # a check that drifted (6 images) turns that setting and the rest of the row to paired passes (1 + 2 × 3)
    drifted = sources.count("paired timing set")
    estimates = ddim["study_images"]["first_estimates"] + (6 if drifted else 0) + drifted * (7 - 6)
    assert summary.images == 5 + 5 + estimates + precise_images(trials), (sources, summary.images)
    # where the runner found both contenders too (their first estimates' intervals overlap) and neither settled under
    # the other, max_pairs 3 ends the group at the priced rounds: the precise images are the price's
    for scheduler, row in (("DDIMScheduler", ddim), ("UniPCMultistepScheduler", unipc)):
        timed = [t for name, t in rows if name == scheduler and t.speedup is not None]
        if len(timed) == 2 and not any(t.precise_stop == "below leader" for t in timed):
            assert precise_images(timed) == row["study_images"]["precise"], [(t.pairs, t.precise_host) for t in timed]
    # priced again with both rows stored: UniPC's stored row lends nothing (its estimates were DDIM's, then timed
    # precisely), DDIM's stored row lends UniPC's, as the runner's sibling lookup would
    again = estimate_space(fresh, sqlite_url)
    assert [r["first_estimates"] for r in again] == ["checked", "shared"]
