"""The former scripts' ``search_params.json``, both ways.

Keys are tuple texts ``(pipeline, scheduler, steps, 'upbound_speedup' or a target, max_loss)``; values hold the
accelerator parameters with ``time``, ``speedup`` and ``score_loss``. An import is validated whole first (types,
finite numbers, ranges: one clear line for the first mistake) and written in one transaction, all or nothing:
speed in an environment named after the file, quality under a protocol named after it (so imported score losses
also join speed measured anywhere else for the same configuration), targets, and each entry as it was written.
An export writes the imported entries word for word, then the bounds and targets sweep measured itself.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select

from search_space.base_config import BaseConfig
from search_space.setting import AccelSetting
from storage import Repository
from storage.bounds import IMPORTED
from storage.models import (
    BaseConfigRow,
    EnvironmentRow,
    LegacyEntryRow,
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
    raw_key: str = ""
    raw_value: Mapping[str, object] | None = None
    """The entry as the file wrote it (exported again word for word)."""

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


def _number(value: object, what: str, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ValueError(f"{what} must be in {bracket}{low:g}, {high:g}], got {value!r}")
    return float(value)


def _entry(key: str, value: object) -> LegacyEntry:
    try:
        parts = ast.literal_eval(key)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        parts = None
    if not isinstance(parts, tuple) or len(parts) != 5:
        raise ValueError("the key is not a tuple (pipeline, scheduler, steps, 'upbound_speedup' or target, max_loss)")
    pipeline, scheduler, steps, kind, max_loss = parts
    for text, what in ((pipeline, "pipeline"), (scheduler, "scheduler")):
        if not isinstance(text, str) or not text:
            raise ValueError(f"{what} must be a non-empty string, got {text!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer ≥ 1, got {steps!r}")
    if kind != LEGACY_UPBOUND:
        try:
            _number(kind, "the target", 0.0, 1e6, low_open=True)
        except ValueError:
            raise ValueError(f"the fourth element must be 'upbound_speedup' or a target speed-up, got {kind!r}") from None
    loss_bound = _number(max_loss, "max_loss", 0.0, 1.0)
    if loss_bound == 1.0:
        raise ValueError("max_loss must be below 1")
    if not isinstance(value, Mapping):
        raise ValueError("the value must be an object of parameters, time, speedup and score_loss")
    missing = [f for f in OUTCOME_FIELDS if f not in value]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    time = _number(value["time"], "time", 0.0, 1e6, low_open=True)
    speedup = _number(value["speedup"], "speedup", 0.0, 1e6, low_open=True)
    score_loss = _number(value["score_loss"], "score_loss", -1.0, 1.0)
    parts_by_method: dict[str, dict[str, object]] = {}
    for name, v in value.items():
        if name in OUTCOME_FIELDS:
            continue
        owner = _PARAM_OWNER.get(name)
        if owner is None:
            raise ValueError(f"unknown parameter {name!r}; valid: {', '.join(sorted(_PARAM_OWNER))}")
        parts_by_method.setdefault(owner, {})[name] = v
    setting = AccelSetting.of({a: ACCELERATORS[a].normalise(p) for a, p in parts_by_method.items()})
    kind_text = LEGACY_UPBOUND if kind == LEGACY_UPBOUND else f"{float(kind):g}"
    return LegacyEntry(pipeline, scheduler, steps, kind_text, loss_bound, setting, time, speedup, score_loss, key,
                       dict(value))


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_legacy(path: Path) -> list[LegacyEntry]:
    """Every entry of a legacy file, validated; UsageError names the file, the entry and what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UsageError(f"{path}: not a readable JSON file ({type(exc).__name__}: {detail})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected an object of tuple keys → settings")
    entries = []
    for key, value in data.items():
        try:
            entries.append(_entry(key, value))
        except ValueError as exc:
            raise UsageError(f"{path}: entry {key[:120]}: {exc}") from None
    seen: dict[tuple[str, str, int, str], LegacyEntry] = {}
    for e in entries:
        known = seen.setdefault((e.pipeline, e.scheduler, e.steps, e.setting.key), e)
        if (known.time, known.speedup, known.score_loss) != (e.time, e.speedup, e.score_loss):
            raise UsageError(f"{path}: entries {known.raw_key} and {e.raw_key} give the same setting different time, "
                             "speedup or score_loss")
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
    """Read a legacy file into the database in one transaction. Returns (settings added, targets added)."""
    entries = parse_legacy(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    origin = f"import:{path.name}"
    now = datetime.now(timezone.utc)
    upbounds = {(e.pipeline, e.scheduler, e.steps, e.max_loss): e.speedup for e in entries if e.kind == LEGACY_UPBOUND}
    added = targets = 0
    with repo.session() as s:
        env_id = _get_or_create(s, EnvironmentRow, f"{IMPORTED}{digest}", device=f"imported from {path.name}",
                                details={"origin": str(path)})
        quality_id = _get_or_create(s, QualityProtocolRow, f"{IMPORTED}{digest}", prompt_source=origin, prompts=[],
                                    prompts_sha256="", prompt_count=0, seed=0, scorer=f"imported:{path.name}")
        timing_id = _get_or_create(s, TimingProtocolRow, f"{IMPORTED}{digest}", images=0, policy={})
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
            inserted = repo.insert_ignore(s, [
                SpeedBaselineRow(speed_config_id=speed_id, environment_id=env_id, timing_protocol_id=timing_id,
                                 time=baseline_time, time_spread=0.0, batch_seconds=[baseline_time], source="imported",
                                 image_digests=[], weights="imported", worker=origin),
                QualityBaselineRow(base_config_id=base_id, quality_protocol_id=quality_id, scores=None, clip_score=None,
                                   image_digests=[], environment_id=env_id, worker=origin),
                SpeedTrialRow(speed_config_id=speed_id, environment_id=env_id, timing_protocol_id=timing_id,
                              setting_key=e.setting.key, settings=e.setting.as_dict(), status="done", weights="imported",
                              weights_key="", first_speedup=e.speedup, first_source=f"imported from {path.name}",
                              first_time=e.time, first_baseline_time=baseline_time, worker=origin, started_at=now),
                QualityTrialRow(base_config_id=base_id, quality_protocol_id=quality_id, setting_key=e.setting.key,
                                settings=e.setting.as_dict(), status="done", score_loss=e.score_loss,
                                environment_id=env_id, worker=origin, started_at=now),
                LegacyEntryRow(origin=origin, key=e.raw_key, value=dict(e.raw_value or e.value())),
            ])
            added += inserted[2] or inserted[3]
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


def _write_atomically(path: Path, text: str) -> None:
    if path.is_dir():
        raise UsageError(f"{path} is a folder: give a file name for the export")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{path}: folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def export_legacy(repo: Repository, path: Path, max_losses: list[float]) -> int:
    """Write the imported entries as they were, then upper bounds with known quality and targets that sweep
    measured (at ``max_losses``) for keys the imports do not hold; returns the number of entries."""
    out: dict[str, object] = {}
    with repo.session() as s:
        for row in s.scalars(select(LegacyEntryRow).order_by(LegacyEntryRow.id)):
            out[row.key] = row.value
    computed: dict[str, dict[str, object]] = {}
    for max_loss in sorted(set(max_losses)):
        for bound in repo.bounds.rows(max_loss):
            if not bound.quality_known or not bound.settings or bound.best is None:
                continue
            if bound.speed_imported and bound.quality is not None and bound.quality.imported:
                continue  # read from a file: exported as it was written
            row = bound.as_row()
            entry = LegacyEntry(bound.speed_config.pipeline, bound.speed_config.scheduler, bound.speed_config.steps,
                                LEGACY_UPBOUND, max_loss, AccelSetting.of(bound.settings), float(row["time"]),  # type: ignore[arg-type]
                                float(bound.speedup), float(bound.score_loss))  # type: ignore[arg-type]
            computed[entry.key] = entry.value()
    for t in repo.targets.targets():
        if str(t["origin"]).startswith("import:") or t["settings"] is None or t["setting_speedup"] is None \
                or t["setting_score_loss"] is None:
            continue
        entry = LegacyEntry(str(t["pipeline"]), str(t["scheduler"]), int(t["steps"]), f"{float(t['target']):g}",  # type: ignore[call-overload]
                            float(t["max_loss"]), AccelSetting.of(t["settings"]),  # type: ignore[arg-type]
                            float(t["setting_time"]), float(t["setting_speedup"]), float(t["setting_score_loss"]))  # type: ignore[arg-type]
        computed[entry.key] = entry.value()
    for key, value in computed.items():
        out.setdefault(key, value)
    _write_atomically(path, json.dumps(out, indent=2) + "\n")
    return len(out)
