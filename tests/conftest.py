"""Shared fixtures: small space files, real tiny pipelines, and fresh SQLite / PostgreSQL databases."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import sweep._compat  # noqa: F401  (before diffusers in any test module)
from storage.models import SpeedTrialRow

POSTGRES_ADMIN_URL = os.environ.get("SWEEP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
"""scripts/test sets it to the server it started (or the one SWEEP_TEST_PG_URL named)."""

SMALL_SPACE = """
name = "small"
combine = true

[protocol]
prompts = "bundled"
num_prompts = 2
seed = 3
scorer = "sweep-tiny-clip"
scorer_pretrained = "random"
warmup_cap = 2
min_pairs = 1
max_pairs = 2

[[base]]
pipelines = ["tiny-sd-b"]
schedulers = ["DDIMScheduler"]
steps = [4]
resolutions = [[64, 64]]
dtype = "float32"
batch_size = 2

[accelerators.deepcache]
cache_interval = [1, 2]
cache_branch_id = [0]

[accelerators.tome]
ratio = [0.5]
max_downsample = [1]
"""


TINY_A_SPACE = """
name = "tiny-a"
combine = true

[protocol]
prompts = "bundled"
num_prompts = 2
scorer = "sweep-tiny-clip"
scorer_pretrained = "random"
warmup_cap = 2
min_pairs = 2
max_pairs = 2

[[base]]
pipelines = ["tiny-sd-a"]
schedulers = ["DDIMScheduler"]
steps = [6]
resolutions = [[64, 64]]
dtype = "float32"
batch_size = 1

[accelerators.deepcache]
cache_interval = [2, 3]

[accelerators.tome]
ratio = [0.3, 0.6]
"""
"""One tiny-sd-a base configuration, batch 1, DeepCache × ToMe: 8 accelerated settings (strategy and worker tests)."""


@pytest.fixture(scope="session")
def local_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny pipelines saved as local diffusers folders, and the tiny CLIP saved as a checkpoint file.

    Loaded as ``weights = "pretrained"`` and a checkpoint path as the scorer's tag, they take the quality pass's
    real code path offline (their weights are random: the scores are test data, not quality).
    """
    import torch

    from search_space.base_config import BaseConfig
    from sweep.pipelines.loader import load_pipeline
    from sweep.scoring.clip_score import ClipScorer

    root = tmp_path_factory.mktemp("weights")
    found: dict[str, str] = {}
    for alias in ("tiny-sd-a", "tiny-sd-b"):
        pipe = load_pipeline(BaseConfig(alias, f"builtin:{alias}", "random", "DDIMScheduler", 4, 64, 64, "float32", 1), "cpu")
        pipe.save_pretrained(root / alias)
        found[alias] = str(root / alias)
    clip = ClipScorer("sweep-tiny-clip", "random", "cpu")
    torch.save(clip._model.state_dict(), root / "tiny-clip.pt")
    found["clip"] = str(root / "tiny-clip.pt")
    return found


def quality_space(weights: dict[str, str], *, prompts: int = 4, steps: str = "[6]", extra: str = "") -> str:
    """TINY_A_SPACE with pretrained (local) weights and a checkpoint scorer: its quality pass runs."""
    return TINY_A_SPACE.replace("num_prompts = 2", f"num_prompts = {prompts}\ntiming_prompts = 1").replace(
        'scorer_pretrained = "random"', f'scorer_pretrained = "{weights["clip"]}"').replace(
        "steps = [6]", f"steps = {steps}").replace(
        "[[base]]", f'[pipelines."tiny-sd-a"]\nweights = "pretrained"\nmodel = "{weights["tiny-sd-a"]}"\n{extra}\n[[base]]')


@pytest.fixture
def small_space(tmp_path: Path) -> Path:
    """One base config; 5 accelerated settings, among them deepcache interval 1, which changes nothing."""
    path = tmp_path / "small.toml"
    path.write_text(SMALL_SPACE, encoding="utf-8")
    return path


TINY_SPEED_SPACE = """
name = "{name}"
combine = false
[protocol]
prompts = "bundled"
num_prompts = 1
timing_prompts = 1
warmup_cap = 2
min_pairs = 2
max_pairs = 3
target_half_width = 0.5
[[base]]
pipelines = ["tiny-sd-a"]
schedulers = [{schedulers}]
steps = [{steps}]
resolutions = [[64, 64]]
dtype = "float32"
batch_size = 1
[accelerators.deepcache]
cache_interval = [{cache_intervals}]
cache_branch_id = [0]
"""


def tiny_speed_space(name: str, *, schedulers: str = '"DDIMScheduler"', steps: str = "4",
                     cache_intervals: str = "2, 4") -> str:
    """One tiny-sd-a row per scheduler × steps (random weights: speed only), DeepCache alone, the cheapest timing
    protocol: the canary, shared-estimate and cluster tests' space."""
    return TINY_SPEED_SPACE.format(name=name, schedulers=schedulers, steps=steps, cache_intervals=cache_intervals)


def write_space(tmp_path: Path, text: str, name: str = "space.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sweep.db'}"


@contextlib.contextmanager
def new_postgres_database(template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of database ``template`` where given) and its URL, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"sweep_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Every storage test runs against both engines."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(fixture)


def precise_images(trials: Sequence[SpeedTrialRow]) -> int:
    """Images of the precise timings: each setting's warm-up and runs, and the baseline's runs: one per pair for a
    setting timed alone, one per round for settings timed together (``precise_host["group"]``: its rounds)."""
    alone = groups = 0
    seen: set[str] = set()
    for t in trials:
        if t.speedup is None:
            continue
        group = (t.precise_host or {}).get("group")
        alone += t.warmup_runs + t.pairs + (0 if group else t.pairs)
        if group and group["id"] not in seen:  # type: ignore[index]
            seen.add(group["id"])  # type: ignore[index]
            groups += group["rounds"]  # type: ignore[index]
    return alone + groups
