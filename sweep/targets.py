"""Targets for tasks from upper bounds, queries by target, and the legacy ``search_params.json`` exchange."""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from search_space.setting import AccelSetting
from sweep.accelerators import ACCELERATORS
from sweep.errors import UsageError

if TYPE_CHECKING:
    from storage.repository import Repository

DEFAULT_FACTORS = {"easy": 0.8, "medium": 1.0, "hard": 1.2}
SCHEDULER_NAMES = {
    "DDIMScheduler": "DDIM", "DPMSolverMultistepScheduler": "DPM-Solver++", "UniPCMultistepScheduler": "UniPC",
    "EulerDiscreteScheduler": "Euler", "EulerAncestralDiscreteScheduler": "Euler a", "PNDMScheduler": "PNDM",
    "LMSDiscreteScheduler": "LMS", "HeunDiscreteScheduler": "Heun", "DEISMultistepScheduler": "DEIS",
}
LEGACY_UPBOUND = "upbound_speedup"
OUTCOME_FIELDS = ("time", "speedup", "score_loss")


def parse_factors(text: str) -> dict[str, float]:
    """``easy=0.8,medium=1.0,hard=1.2`` → {difficulty: factor}; a clear error otherwise."""
    factors: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            factor = float(value)
        except ValueError:
            factor = math.nan
        if not sep or not name.strip() or not factor > 0:
            raise UsageError(f"--factors {text!r}: expected name=positive number pairs, e.g. easy=0.8,medium=1.0,hard=1.2")
        factors[name.strip()] = factor
    return factors


def target_for(upper_bound: float, factor: float) -> float:
    """floor(u × factor × 10) / 10, computed so that 9.6 stays 9.6 despite binary floating point."""
    return math.floor(round(upper_bound * factor * 10, 9)) / 10


def scheduler_name(scheduler: str) -> str:
    return SCHEDULER_NAMES.get(scheduler, scheduler.removesuffix("Scheduler"))


def task_sentence(pipeline: str, scheduler: str, steps: int, target: float) -> str:
    return (f"Take an {pipeline} pipeline ({scheduler_name(scheduler)}, {steps} steps) as the baseline, "
            f"and achieve a {target:g}x speedup")


# -- legacy search_params.json ----------------------------------------------------------------------------

_PARAM_OWNER = {p.name: name for name, cls in ACCELERATORS.items() for p in cls.params}


@dataclass(frozen=True)
class LegacyEntry:
    pipeline: str
    scheduler: str
    steps: int
    kind: str
    """``upbound_speedup`` or a target speed-up written as text (``9.6``)."""
    max_loss: float
    setting: AccelSetting
    time: float
    speedup: float
    score_loss: float

    @property
    def key(self) -> str:
        kind: object = self.kind if self.kind == LEGACY_UPBOUND else float(self.kind)
        return repr((self.pipeline, self.scheduler, self.steps, kind, self.max_loss))

    def value(self) -> dict[str, object]:
        params: dict[str, object] = {}
        for name, values in self.setting:
            cls = ACCELERATORS[name]
            params.update({p.name: values[p.name] for p in cls.params if p.primary or values[p.name] != p.default})
        return {**params, "time": self.time, "speedup": self.speedup, "score_loss": self.score_loss}


def parse_legacy(path: Path) -> list[LegacyEntry]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected an object of tuple keys → settings")
    entries = []
    for key, value in data.items():
        try:
            pipeline, scheduler, steps, kind, max_loss = ast.literal_eval(key)
        except (ValueError, SyntaxError, TypeError):
            raise UsageError(f"{path}: key {key!r} is not a tuple (pipeline, scheduler, steps, "
                             f"'upbound_speedup' or target, max_loss)") from None
        if not isinstance(value, Mapping) or any(f not in value for f in OUTCOME_FIELDS):
            raise UsageError(f"{path}: entry {key} needs {', '.join(OUTCOME_FIELDS)}")
        parts: dict[str, dict[str, object]] = {}
        for name, v in value.items():
            if name in OUTCOME_FIELDS:
                continue
            owner = _PARAM_OWNER.get(name)
            if owner is None:
                raise UsageError(f"{path}: entry {key}: unknown parameter {name!r}; valid: {', '.join(sorted(_PARAM_OWNER))}")
            parts.setdefault(owner, {})[name] = v
        try:
            setting = AccelSetting.of({a: ACCELERATORS[a].normalise(p) for a, p in parts.items()})
        except ValueError as exc:
            raise UsageError(f"{path}: entry {key}: {exc}") from None
        kind_text = LEGACY_UPBOUND if kind == LEGACY_UPBOUND else f"{float(kind):g}"
        entries.append(LegacyEntry(str(pipeline), str(scheduler), int(steps), kind_text, float(max_loss), setting,
                                   float(value["time"]), float(value["speedup"]), float(value["score_loss"])))
    return entries


def import_legacy(repo: Repository, path: Path) -> tuple[int, int]:
    """Read a legacy file into the database as imported results: an ``imported`` environment and protocol named
    after the file, one baseline per base configuration (its time implied by time × speed-up), a trial per
    setting, and a target per target entry. Returns (trials added, targets added)."""
    import hashlib
    from datetime import datetime, timezone

    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    from search_space.base_config import BaseConfig
    from storage.models import TargetRow, TrialRow
    from storage.repository import Scope, TrialRecord
    from sweep.pipelines.registry import PIPELINES, canonical_alias

    entries = parse_legacy(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    origin = f"import:{path.name}"
    env_id = repo.ensure_environment(f"imported:{digest}", f"imported from {path.name}", {"origin": str(path)})
    protocol_id = repo.ensure_protocol(
        f"imported:{digest}", prompt_source=origin, prompts=[], prompts_sha256="", seed=0, timing={},
        scorer=f"imported:{path.name}", scorer_random=False,
    )
    now = datetime.now(timezone.utc)
    trials = targets = 0
    upbounds = {(e.pipeline, e.scheduler, e.steps, e.max_loss): e.speedup for e in entries if e.kind == LEGACY_UPBOUND}
    for e in entries:
        info = PIPELINES.get(canonical_alias(e.pipeline))
        height, width = info.resolution if info else (512, 512)
        base = BaseConfig(e.pipeline, info.default_model if info else e.pipeline, "pretrained", e.scheduler, e.steps,
                          height, width, "float16", 1)
        scope = Scope(repo.ensure_base_config(base), env_id, protocol_id)
        if repo.baseline(scope) is None:
            repo.save_baseline(scope, time=e.time * e.speedup, time_spread=0.0, clip_score=0.0, image_digests=[],
                               worker=origin)
        baseline = repo.baseline(scope)
        trials += repo.save_trial(scope, TrialRecord(
            e.setting, "done", origin, now, baseline_id=baseline.id if baseline else None, time=e.time,
            paired_baseline_time=e.time * e.speedup, speedup=e.speedup, score_loss=e.score_loss,
        ))
        if e.kind == LEGACY_UPBOUND:
            continue
        with repo.session() as s:
            trial_id = s.scalar(select(TrialRow.id).where(*repo._scope_filter(TrialRow, scope), TrialRow.setting_key == e.setting.key))
        try:
            with repo.session() as s:
                s.add(TargetRow(base_config_id=scope.base_config_id, environment_id=env_id, protocol_id=protocol_id,
                                max_loss=e.max_loss, difficulty=f"legacy {e.kind}", factor=None, target=float(e.kind),
                                upper_bound=upbounds.get((e.pipeline, e.scheduler, e.steps, e.max_loss)),
                                trial_id=trial_id, origin=origin))
            targets += 1
        except IntegrityError:
            pass
    return trials, targets


def export_legacy(repo: Repository, path: Path, max_losses: list[float], include_random: bool = False) -> int:
    """Write upper bounds (and stored targets with a reaching setting) in the legacy format; returns entries."""
    from storage.repository import TargetStore

    out: dict[str, dict[str, object]] = {}
    losses = sorted(set(max_losses) | {float(t["max_loss"]) for t in TargetStore(repo).targets()})  # type: ignore[arg-type]
    for max_loss in losses:
        for bound in repo.upper_bounds(max_loss):
            if not bound.settings or (not bound.quality_meaningful and not include_random):
                continue
            entry = LegacyEntry(bound.base.pipeline, bound.base.scheduler, bound.base.steps, LEGACY_UPBOUND, max_loss,
                                AccelSetting.of(bound.settings), bound.time, bound.speedup, bound.score_loss)
            out[entry.key] = entry.value()
    for t in TargetStore(repo).targets():
        if t["settings"] is None or (t["quality_meaningful"] is False and not include_random):
            continue
        entry = LegacyEntry(str(t["pipeline"]), str(t["scheduler"]), int(t["steps"]), f"{float(t['target']):g}",  # type: ignore[call-overload]
                            float(t["max_loss"]), AccelSetting.of(t["settings"]),  # type: ignore[arg-type]
                            float(t["setting_time"]), float(t["setting_speedup"]), float(t["setting_score_loss"]))  # type: ignore[arg-type]
        out[entry.key] = entry.value()
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return len(out)
