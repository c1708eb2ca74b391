"""The former scripts' ``search_params.json``, both ways.

Keys are tuple texts ``(pipeline, scheduler, steps, 'upbound_speedup' or a target, max_loss)``; values hold the
accelerator parameters with ``time``, ``speedup`` and ``score_loss``. An import lands as speed measured in an
environment named after the file and quality under a protocol named after it, so imported quality joins speed
measured anywhere else for the same configuration; it is one transaction, all or nothing.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select

from search_space.base_config import BaseConfig
from search_space.setting import AccelSetting
from storage import Repository
from storage.models import (
    BaseConfigRow,
    EnvironmentRow,
    QualityBaselineRow,
    QualityProtocolRow,
    QualityTrialRow,
    SpeedBaselineRow,
    SpeedConfigRow,
    SpeedTrialRow,
    TargetRow,
    TimingProtocolRow,
)
from sweep.accelerators import ACCELERATORS
from sweep.errors import UsageError
from sweep.pipelines.registry import PIPELINES, canonical_alias

LEGACY_UPBOUND = "upbound_speedup"
OUTCOME_FIELDS = ("time", "speedup", "score_loss")
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

    def base(self) -> BaseConfig:
        info = PIPELINES.get(canonical_alias(self.pipeline))
        height, width = info.resolution if info else (512, 512)
        return BaseConfig(self.pipeline, info.default_model if info else self.pipeline, "pretrained", self.scheduler,
                          self.steps, height, width, "float16", 1)


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


def _get_or_create(session: object, table: type, key: str, **fields: object) -> int:
    found = session.scalar(select(table.id).where(table.key == key))  # type: ignore[attr-defined]
    if found is not None:
        return int(found)
    row = table(key=key, **fields)
    session.add(row)  # type: ignore[attr-defined]
    session.flush()  # type: ignore[attr-defined]
    return int(row.id)


def import_legacy(repo: Repository, path: Path) -> tuple[int, int]:
    """Read a legacy file into the database: per base configuration a speed baseline (its time implied by
    time × speed-up) and a quality baseline, per entry's setting a speed and a quality record, per target
    entry a target. Returns (settings added, targets added)."""
    entries = parse_legacy(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    origin = f"import:{path.name}"
    now = datetime.now(timezone.utc)
    upbounds = {(e.pipeline, e.scheduler, e.steps, e.max_loss): e.speedup for e in entries if e.kind == LEGACY_UPBOUND}
    added = targets = 0
    with repo.session() as s:
        env_id = _get_or_create(s, EnvironmentRow, f"imported:{digest}", device=f"imported from {path.name}",
                                details={"origin": str(path)})
        quality_id = _get_or_create(s, QualityProtocolRow, f"imported:{digest}", prompt_source=origin, prompts=[],
                                    prompts_sha256="", prompt_count=0, seed=0, scorer=f"imported:{path.name}")
        timing_id = _get_or_create(s, TimingProtocolRow, f"imported:{digest}", images=0, policy={})
        for e in entries:
            base = e.base()
            speed = base.speed
            speed_id = _get_or_create(s, SpeedConfigRow, speed.key, pipeline=speed.pipeline, scheduler=speed.scheduler,
                                      steps=speed.steps, height=speed.height, width=speed.width, dtype=speed.dtype,
                                      batch_size=speed.batch_size)
            base_id = _get_or_create(s, BaseConfigRow, base.key, speed_config_id=speed_id, pipeline=base.pipeline,
                                     model=base.model, weights=base.weights, scheduler=base.scheduler, steps=base.steps,
                                     height=base.height, width=base.width, dtype=base.dtype, batch_size=base.batch_size)
            baseline_time = e.time * e.speedup
            rows = [
                SpeedBaselineRow(speed_config_id=speed_id, environment_id=env_id, timing_protocol_id=timing_id,
                                 time=baseline_time, time_spread=0.0, batch_seconds=[baseline_time], source="imported",
                                 image_digests=[], weights="imported", worker=origin),
                QualityBaselineRow(base_config_id=base_id, quality_protocol_id=quality_id, scores=None, clip_score=None,
                                   image_digests=[], environment_id=env_id, worker=origin),
            ]
            inserted_speed, inserted_quality = repo.insert_ignore(s, rows + [
                SpeedTrialRow(speed_config_id=speed_id, environment_id=env_id, timing_protocol_id=timing_id,
                              setting_key=e.setting.key, settings=e.setting.as_dict(), status="done", weights="imported",
                              first_speedup=e.speedup, first_source=f"imported from {path.name}", first_time=e.time,
                              first_baseline_time=baseline_time, worker=origin, started_at=now),
                QualityTrialRow(base_config_id=base_id, quality_protocol_id=quality_id, setting_key=e.setting.key,
                                settings=e.setting.as_dict(), status="done", score_loss=e.score_loss,
                                environment_id=env_id, worker=origin, started_at=now),
            ])[2:]
            added += inserted_speed or inserted_quality
            if e.kind == LEGACY_UPBOUND:
                continue
            exists = s.scalar(select(TargetRow.id).where(
                TargetRow.base_config_id == base_id, TargetRow.quality_protocol_id == quality_id,
                TargetRow.environment_id == env_id, TargetRow.timing_protocol_id == timing_id,
                TargetRow.max_loss == e.max_loss, TargetRow.difficulty == f"legacy {e.kind}"))
            if exists is None:
                s.add(TargetRow(base_config_id=base_id, quality_protocol_id=quality_id, environment_id=env_id,
                                timing_protocol_id=timing_id, max_loss=e.max_loss, difficulty=f"legacy {e.kind}",
                                factor=None, target=float(e.kind),
                                upper_bound=upbounds.get((e.pipeline, e.scheduler, e.steps, e.max_loss)),
                                setting_key=e.setting.key, origin=origin))
                targets += 1
    return added, targets


def export_legacy(repo: Repository, path: Path, max_losses: list[float]) -> int:
    """Write upper bounds with known quality (and stored targets with a reaching setting) in the legacy format;
    returns the number of entries."""
    out: dict[str, dict[str, object]] = {}
    stored_targets = repo.targets.targets()
    losses = sorted(set(max_losses) | {float(t["max_loss"]) for t in stored_targets})  # type: ignore[arg-type]
    for max_loss in losses:
        for bound in repo.bounds.rows(max_loss):
            if not bound.quality_known or not bound.settings or bound.best is None:
                continue
            row = bound.as_row()
            entry = LegacyEntry(bound.speed_config.pipeline, bound.speed_config.scheduler, bound.speed_config.steps,
                                LEGACY_UPBOUND, max_loss, AccelSetting.of(bound.settings), float(row["time"]),  # type: ignore[arg-type]
                                float(bound.speedup), float(bound.score_loss))  # type: ignore[arg-type]
            out[entry.key] = entry.value()
    for t in stored_targets:
        if t["settings"] is None or t["setting_speedup"] is None or t["setting_score_loss"] is None:
            continue
        entry = LegacyEntry(str(t["pipeline"]), str(t["scheduler"]), int(t["steps"]), f"{float(t['target']):g}",  # type: ignore[call-overload]
                            float(t["max_loss"]), AccelSetting.of(t["settings"]),  # type: ignore[arg-type]
                            float(t["setting_time"]), float(t["setting_speedup"]), float(t["setting_score_loss"]))  # type: ignore[arg-type]
        out[entry.key] = entry.value()
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return len(out)
