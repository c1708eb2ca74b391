"""Hostile input, generated: devices, durations, numbers and seeds on the command line and the HTTP API, and
space files that are too large, name a scheduler that does not fit, more steps than the model was trained
with, a NaN parameter, or a path that cannot be read. Each generated case gets one line, exit 2, no traceback,
and leaves the database as it was."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, inspect, select, table
from typer.testing import CliRunner

from search_space import defaults
from sweep.fronts.cli import app
from tests.conftest import SMALL_SPACE

runner = CliRunner()
FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def one_line_error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (args, result.output)
    assert isinstance(result.exception, SystemExit), (args, result.exception)  # not a traceback
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), (args, result.output)
    return lines[0]


def snapshot(url: str) -> dict[str, int]:
    """Every table's row count: what a refused command must leave as it was."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            names = inspect(connection).get_table_names()
            return {n: connection.execute(select(func.count()).select_from(table(n))).scalar_one() for n in names}
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A database holding one measured space, and that space's file."""
    folder = tmp_path_factory.mktemp("hostile")
    space = folder / "small.toml"
    space.write_text(SMALL_SPACE, encoding="utf-8")
    url = f"sqlite:///{folder / 'sweep.db'}"
    result = runner.invoke(app, ["upbound", str(space), "--db", url, "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    yield url, space


# -- devices ------------------------------------------------------------------------------------------------------

NOT_HERE = st.one_of(
    st.sampled_from(["", " ", "meta", "mps", "xla", "xpu", "hpu", "cuda", "cuda:0", "cuda:7", "cpu:1", "cuda:x", "gpu",
                     "privateuseone", "cpu,"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz:0123456789 ", max_size=12),
).filter(lambda d: d not in ("cpu", "cpu:0"))


@FEW
@given(device=NOT_HERE)
def test_a_device_this_machine_cannot_measure_on_is_refused(stored: tuple[str, Path], device: str) -> None:
    url, space = stored
    before = snapshot(url)
    assert "--device" in one_line_error(["upbound", str(space), "--db", url, "--device", device])
    assert "--device" in one_line_error(["worker", "--db", url, "--device", device])
    assert snapshot(url) == before


@FEW
@given(entries=st.lists(st.one_of(st.just(""), st.just(" "), NOT_HERE, st.just("cpu")), min_size=1, max_size=4)
       .filter(lambda e: any(d.strip() not in ("cpu", "cpu:0") for d in e)))
def test_a_device_list_with_an_empty_or_unusable_entry_is_refused(stored: tuple[str, Path], entries: list[str]) -> None:
    url, space = stored
    before = snapshot(url)
    assert "--devices" in one_line_error(["upbound", str(space), "--db", url, "--devices", ",".join(entries)])
    assert snapshot(url) == before


@FEW
@given(device=NOT_HERE.filter(lambda d: d.strip() != "meta"))
def test_pipelines_build_on_a_device_that_is_not_here_is_refused(device: str) -> None:
    assert "--device" in one_line_error(["pipelines", "--build", "tiny-sd-a", "--device", device])


# -- durations, numbers, seeds ------------------------------------------------------------------------------------

VALID_DURATION = re.compile(r"\s*([0-9]+(\.[0-9]+)?|([0-9]+(\.[0-9]+)?[smhdSMHD])+)\s*")
OTHER_DIGITS = st.characters(categories=["Nd"]).filter(lambda c: not "0" <= c <= "9")


@FEW
@given(text=st.one_of(
    st.text(min_size=1, max_size=8).filter(lambda t: not VALID_DURATION.fullmatch(t) and not t.startswith("-")),
    st.builds(lambda digits, unit: digits + unit, st.text(OTHER_DIGITS, min_size=1, max_size=3), st.sampled_from(["", "s", "m"])),
    st.sampled_from(["0", "0s", "0m0s", "400d", "99999999h"]),
))
def test_a_duration_that_is_not_one_is_refused(stored: tuple[str, Path], text: str) -> None:
    url, space = stored
    before = snapshot(url)
    assert "--time-budget" in one_line_error(["upbound", str(space), "--db", url, "--device", "cpu", "--time-budget", text])
    assert snapshot(url) == before


NOT_FINITE = st.one_of(st.sampled_from(["inf", "-inf", "nan", "1e400", "-1e400", "Infinity"]),
                       st.floats(min_value=1e6, exclude_min=True, allow_infinity=True).map(repr))


@FEW
@given(target=NOT_FINITE, max_loss=st.one_of(st.just("0.02"), NOT_FINITE, st.sampled_from(["1", "-0.1", "1.5"])))
def test_query_numbers_that_are_not_finite_or_in_range_are_refused(stored: tuple[str, Path], target: str,
                                                                   max_loss: str) -> None:
    url, _ = stored
    before = snapshot(url)
    line = one_line_error(["query", "--db", url, "--target", target, "--max-loss", max_loss])
    assert "--target" in line or "--max-loss" in line
    assert snapshot(url) == before


@FEW
@given(seed=st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32)))
def test_an_optuna_seed_outside_its_range_is_refused(stored: tuple[str, Path], seed: int) -> None:
    url, space = stored
    before = snapshot(url)
    assert "--seed" in one_line_error(["upbound", str(space), "--db", url, "--device", "cpu", "--strategy", "optuna",
                                       "--seed", str(seed)])
    assert snapshot(url) == before


def test_the_http_api_refuses_the_same_numbers_as_the_cli(stored: tuple[str, Path]) -> None:
    from sweep.fronts.serve import make_server

    url, _ = stored
    server = make_server(url, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}{path}", timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            assert "error" in json.load(exc)
            return exc.code

    @FEW
    @given(target=st.one_of(NOT_FINITE, st.text(max_size=6).filter(lambda t: not re.fullmatch(r"\s*[0-9.eE+-]+\s*", t))))
    def check(target: str) -> None:
        assert status("/query?" + urllib.parse.urlencode({"target": target})) == 400
        assert status("/upper-bounds?" + urllib.parse.urlencode({"max_loss": target})) == 400

    try:
        before = snapshot(url)
        assert status("/query?target=2") == 200
        check()
        assert snapshot(url) == before
    finally:
        server.shutdown()
        server.server_close()


# -- space files --------------------------------------------------------------------------------------------------

def space_with(tmp_path: Path, body: str, name: str = "space.toml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


@FEW
@given(ratios=st.integers(1, 150), sx=st.integers(1, 8), sy=st.integers(1, 8), intervals=st.integers(1, 50),
       steps=st.integers(1, 40))
def test_a_space_too_large_to_expand_is_counted_and_refused_at_once(tmp_path: Path, ratios: int, sx: int, sy: int,
                                                                     intervals: int, steps: int) -> None:
    tome, deepcache = ratios * sx * sy, intervals
    total = (1 + tome + deepcache + tome * deepcache) * steps  # combine = true: each grid alone, both, the baseline
    assume(total > defaults.MAX_SPACE_SETTINGS)
    body = SMALL_SPACE.replace("ratio = [0.5]", f"ratio = {[round(0.75 * i / ratios, 6) for i in range(ratios)]}\n"
                               f"sx = {list(range(1, sx + 1))}\nsy = {list(range(1, sy + 1))}")
    body = body.replace("cache_interval = [1, 2]", f"cache_interval = {list(range(1, intervals + 1))}")
    body = body.replace("steps = [4]", f"steps = {list(range(1, steps + 1))}")
    started = time.perf_counter()
    line = one_line_error(["space", "show", str(space_with(tmp_path, body))])
    assert f"expands to {total:,} settings" in line and f"more than the limit of {defaults.MAX_SPACE_SETTINGS:,}" in line
    assert time.perf_counter() - started < 10


def incompatible_schedulers() -> list[str]:
    import diffusers

    fits = {"PNDMScheduler", *diffusers.PNDMScheduler._compatibles}
    return sorted(n for n in dir(diffusers) if n.endswith("Scheduler") and n != "SchedulerMixin" and n not in fits)


@FEW
@given(data=st.data())
def test_a_scheduler_that_does_not_fit_the_pipeline_is_refused_when_the_space_is_read(tmp_path: Path,
                                                                                     data: st.DataObject) -> None:
    scheduler = data.draw(st.sampled_from(incompatible_schedulers()))
    body = SMALL_SPACE.replace('schedulers = ["DDIMScheduler"]', f'schedulers = ["DDIMScheduler", "{scheduler}"]')
    line = one_line_error(["space", "show", str(space_with(tmp_path, body))])
    assert f"scheduler {scheduler} does not fit tiny-sd-b" in line


@FEW
@given(steps=st.integers(min_value=1001, max_value=2**40))
def test_more_steps_than_training_timesteps_are_refused_when_the_space_is_read(tmp_path: Path, steps: int) -> None:
    body = SMALL_SPACE.replace("steps = [4]", f"steps = [4, {steps}]")
    assert f"steps {steps} exceeds tiny-sd-b's 1000 training timesteps" in one_line_error(
        ["space", "show", str(space_with(tmp_path, body))])


@FEW
@given(value=st.sampled_from(["nan", "+nan", "-nan", "inf", "-inf"]), where=st.sampled_from(["ratio", "sx_list"]))
def test_a_parameter_that_is_not_a_finite_number_is_refused(tmp_path: Path, value: str, where: str) -> None:
    body = SMALL_SPACE.replace("ratio = [0.5]", f"ratio = [0.5, {value}]" if where == "ratio" else f"ratio = {value}")
    assert "ratio" in one_line_error(["space", "show", str(space_with(tmp_path, body))])


@FEW
@given(kind=st.sampled_from(["loop", "long", "through-file", "folder"]), length=st.integers(min_value=256, max_value=2000))
def test_a_space_path_that_cannot_be_read_gets_one_line(tmp_path: Path, kind: str, length: int) -> None:
    if kind == "loop":
        (tmp_path / "a").unlink(missing_ok=True)
        (tmp_path / "b").unlink(missing_ok=True)
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
        path = tmp_path / "a"
    elif kind == "long":
        path = tmp_path / ("x" * length + ".toml")
    elif kind == "through-file":
        space_with(tmp_path, SMALL_SPACE, "plain.toml")
        path = tmp_path / "plain.toml" / "space.toml"
    else:
        path = tmp_path
    assert "cannot read space file" in one_line_error(["space", "show", str(path)])
