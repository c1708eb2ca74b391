"""The former scripts' ``search_params.json``, both ways.

Keys are tuple texts ``(pipeline, scheduler, steps, 'upbound_speedup' or a target, max_loss)``; values hold the
accelerator parameters with ``time``, ``speedup`` and ``score_loss``. An import is validated whole before anything
is written (one line naming the file, the entry and the first mistake) and written in one transaction, all or
nothing: speed in an environment of the file, quality under a protocol of it (so imported score losses also join
speed measured anywhere else for the same configuration), targets, and each entry as it was written.

Valid means what sweep itself could have measured and stored:

- JSON with no key written twice in one object, at any depth (``json`` would keep the last value silently), and
  no logical key written twice (``(... 0.02)`` and ``(... 0.020)``);
- a known pipeline alias, a diffusers scheduler class, steps from 1 to the pipeline's training timesteps (1000);
- parameters that exactly one registered setting has on that pipeline. Methods share parameter names (PAB and
  FasterCache both have ``spatial_skip``), so the methods are not read off a name → method map: the import looks
  for the sets of methods that declare every parameter given (each by exactly one of them), each method giving at
  least one, all applying to the pipeline and combinable as a space combines them. A lone ``spatial_skip`` fits PAB
  and FasterCache; where several sets fit, the one whose primary parameters are all given wins (PAB: sweep's export
  always writes primaries, so its own entries resolve exactly), else the entry is ambiguous and refused. PAB's
  ``cross_skip`` with FasterCache's ``uncond_skip``, or T-GATE's ``gate_step`` with ToMe's ``ratio``, fit no set;
  each value must be in its method's range;
- the baseline (no parameters) has a speed-up of exactly 1 and a score loss of exactly 0;
- every value fits its column on SQLite as on PostgreSQL (string lengths of String(n), no NUL, valid UTF-8,
  32-bit integers), checked on the rows before the transaction opens.

A file is identified by its content: its SHA-256 keys the environment and protocols, and the origin of its entries
is ``import:NAME@SHA256``, so two different files of the same name are both kept, each with its own values.
An entry the database holds already adds nothing and is skipped (a file whose entries are all held adds no row),
and among the entries left one setting of one configuration has one time, speed-up and score loss (one source
measured it once: an export may hold an imported entry and sweep's own measurement of the same setting side by side):

1. an imported entry with the same logical key and the same value (re-importing a file, or an export's
   word-for-word copy of the imported entries);
2. an entry whose time, speed-up and score loss are exactly those of stored records of its pipeline, scheduler,
   steps and setting, the speed or the score loss among them measured by sweep itself: what an export writes for
   the bounds and targets sweep measured. Floats survive JSON exactly, so equality is a fingerprint no other
   measurement matches by chance; it compares with the records, not with today's bound, so it still holds after a
   bound moved on (a precise timing keeps the first estimate it started from).

An export writes the imported entries word for word, then the bounds and targets sweep measured itself for
logical keys the imports do not hold. A legacy file holds one value per key: where two imports hold one key with
different values, the export is refused with one line naming the key and both files.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import itertools
import json
import math
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import JSON, BigInteger, Integer, select
from sqlalchemy.orm import Session

from search_space.base_config import BaseConfig
from search_space.setting import AccelSetting
from storage import Repository
from storage.bounds import IMPORTED
from storage.models import (
    Base,
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
from sweep.pipelines.loader import scheduler_names
from sweep.pipelines.registry import PIPELINES, PipelineInfo, canonical_alias
from sweep.study.catalogue import CATALOGUE

LEGACY_UPBOUND = "upbound_speedup"
OUTCOME_FIELDS = ("time", "speedup", "score_loss")
_DECLARED = {name: frozenset(p.name for p in cls.params) for name, cls in ACCELERATORS.items()}
_PRIMARY = {name: frozenset(p.name for p in cls.params if p.primary) for name, cls in ACCELERATORS.items()}
_OWNERS = {p: tuple(m for m, declared in _DECLARED.items() if p in declared) for d in _DECLARED.values() for p in d}
"""Parameter → every method declaring it (several may: ``spatial_skip`` is PAB's and FasterCache's)."""
INT32_MAX = 2**31 - 1
"""Integer columns are 32-bit on PostgreSQL."""
DEFAULT_TRAINING_TIMESTEPS = 1000
_KEY_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError)


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


def _cut(text: str, limit: int = 120) -> str:
    """``text`` for a one-line message: unprintable characters (line breaks, NUL, lone surrogates) escaped, cut
    at ``limit`` characters."""
    shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text[: limit + 1])
    return shown if len(shown) <= limit else shown[:limit] + "…"


def _r(value: object, limit: int = 80) -> str:
    """``repr(value)`` for a one-line message, cut at ``limit`` characters."""
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python converts to text
        return "an integer too long to write"
    return _cut(text, limit)


def _number_text(x: float) -> str:
    """A target as text: ``9.6``, ``10``; every digit where ``%g`` would round (two targets stay two)."""
    short = f"{x:g}"
    return short if float(short) == x else repr(x)


def _number(value: object, what: str, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a finite number, got {_r(value)}")
    bracket = "(" if low_open else "["
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        raise ValueError(f"{what} must be in {bracket}{low:g}, {high:g}], got {_r(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {_r(value)}")
    if number > high or number < low or (low_open and number == low):
        raise ValueError(f"{what} must be in {bracket}{low:g}, {high:g}], got {_r(value)}")
    return number


@functools.lru_cache(maxsize=1)
def _schedulers() -> frozenset[str]:
    return frozenset(scheduler_names())


@functools.cache
def _training_timesteps(alias: str) -> int:
    """The training timesteps of the pipeline's own scheduler config: more steps than these no scheduler runs."""
    try:
        config = json.loads((PIPELINES[alias].config_dir / "scheduler" / "scheduler_config.json").read_text("utf-8"))
        return int(config.get("num_train_timesteps", DEFAULT_TRAINING_TIMESTEPS))
    except (OSError, ValueError, TypeError, AttributeError):
        return DEFAULT_TRAINING_TIMESTEPS


def _no_setting(names: set[str], usable: Sequence[str], info: PipelineInfo) -> str:
    """Why no registered setting of ``info``'s pipeline has exactly the parameters ``names``."""
    needed = sorted({owners[0] for n in names if len(owners := [m for m in _OWNERS[n] if m in usable]) == 1})
    for a, b in itertools.combinations(needed, 2):
        if not CATALOGUE.combinable((a, b)):
            given = {m: ", ".join(sorted(names & _DECLARED[m])) for m in (a, b)}
            return (f"no setting combines {a} and {b} (sweep never generates them together), yet the parameters name "
                    f"both: {a}: {given[a]}; {b}: {given[b]}")
    return f"no single registered setting of {info.alias} has the parameters {', '.join(sorted(names))}"


def _setting(params: Mapping[str, object], info: PipelineInfo) -> AccelSetting:
    """The one setting of ``info``'s pipeline with exactly these parameters (see the module's docstring);
    ValueError says why there is none, or more than one."""
    for name in params:
        if name not in _OWNERS:
            raise ValueError(f"unknown parameter {_r(name)}; valid: {', '.join(sorted(_OWNERS))}")
    if not params:
        return AccelSetting.baseline()
    usable = [m for m, cls in ACCELERATORS.items() if cls.applies_to(info.denoiser, info.pipeline_class)]
    names = set(params)
    for name in sorted(names):
        if not any(m in usable for m in _OWNERS[name]):
            owners = _OWNERS[name]
            verb = "does" if len(owners) == 1 else "do"
            raise ValueError(f"parameter {name!r} is {' and '.join(owners)}'s, which {verb} not apply to {info.alias} "
                             f"({info.pipeline_class})")
    fits = [
        methods for size in range(1, len(usable) + 1) for methods in itertools.combinations(usable, size)
        if all(sum(n in _DECLARED[m] for m in methods) == 1 for n in names)
        and all(names & _DECLARED[m] for m in methods) and CATALOGUE.combinable(methods)
    ]
    if len(fits) > 1:
        complete = [f for f in fits if all(_PRIMARY[m] <= names for m in f)]
        fits = complete if len(complete) == 1 else fits
    if not fits:
        raise ValueError(_no_setting(names, usable, info))
    if len(fits) > 1:
        raise ValueError(f"the parameters {', '.join(sorted(names))} fit {' or '.join(' + '.join(f) for f in fits)} "
                         f"alike: add a parameter only one of them has")
    values = {}
    for method in fits[0]:
        cls = ACCELERATORS[method]
        given = {}
        for name in sorted(names & _DECLARED[method]):
            spec = cls.param(name)
            try:
                given[name] = spec.coerce(params[name])
            except (ValueError, OverflowError):
                raise ValueError(f"{method} parameter {name}: {_r(params[name])} is not "
                                 f"{spec.describe_valid()}") from None
        values[method] = cls.normalise(given)
    return AccelSetting.of(values)


def _entry(key: str, value: object) -> LegacyEntry:
    try:
        parts = ast.literal_eval(key)
    except _KEY_ERRORS:
        parts = None
    if not isinstance(parts, tuple) or len(parts) != 5:
        raise ValueError("the key is not a tuple (pipeline, scheduler, steps, 'upbound_speedup' or target, max_loss)")
    pipeline, scheduler, steps, kind, max_loss = parts
    for text, what in ((pipeline, "pipeline"), (scheduler, "scheduler")):
        if not isinstance(text, str) or not text:
            raise ValueError(f"{what} must be a non-empty string, got {_r(text)}")
    info = PIPELINES.get(canonical_alias(pipeline))
    if info is None:
        raise ValueError(f"unknown pipeline {_r(pipeline)}; valid: {', '.join(PIPELINES)}")
    if scheduler not in _schedulers():
        raise ValueError(f"unknown scheduler {_r(scheduler)}; valid: {', '.join(sorted(_schedulers()))}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer ≥ 1, got {_r(steps)}")
    timesteps = _training_timesteps(info.alias)
    if steps > timesteps:
        raise ValueError(f"steps {_r(steps)} exceeds {info.alias}'s {timesteps} training timesteps")
    if kind != LEGACY_UPBOUND:
        try:
            _number(kind, "the target", 0.0, 1e6, low_open=True)
        except ValueError:
            raise ValueError(f"the fourth element must be 'upbound_speedup' or a target speed-up, "
                             f"got {_r(kind)}") from None
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
    setting = _setting({n: v for n, v in value.items() if n not in OUTCOME_FIELDS}, info)
    if setting.is_baseline and (speedup != 1.0 or score_loss != 0.0):
        raise ValueError(f"the baseline (no accelerator parameters) has a speed-up of exactly 1 and a score loss of "
                         f"exactly 0, got speedup {_r(value['speedup'])} and score_loss {_r(value['score_loss'])}")
    kind_text = LEGACY_UPBOUND if kind == LEGACY_UPBOUND else _number_text(float(kind))
    return LegacyEntry(info.alias, scheduler, steps, kind_text, loss_bound, setting, time, speedup, score_loss, key,
                       dict(value))


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


class _Object(dict):  # type: ignore[type-arg]
    """A JSON object as read, with a key it wrote twice (``json`` alone keeps the last value silently)."""

    duplicate: str | None = None


def _object(pairs: list[tuple[str, object]]) -> _Object:
    obj = _Object()
    for key, value in pairs:
        if key in obj and obj.duplicate is None:
            obj.duplicate = key
        obj[key] = value
    return obj


def _duplicate(value: object) -> str | None:
    """A key that some object in ``value``, at any depth, writes twice."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Object):
            if item.duplicate is not None:
                return item.duplicate
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _logical_key(raw: str) -> str:
    """A stored entry's key as :attr:`LegacyEntry.key` writes it (spacing, pipeline synonyms and ``0.020`` vs
    ``0.02`` aside); the text itself where it does not parse."""
    try:
        pipeline, scheduler, steps, kind, max_loss = ast.literal_eval(raw)
        return repr((canonical_alias(pipeline), scheduler, steps, kind if kind == LEGACY_UPBOUND else float(kind),
                     float(max_loss)))
    except _KEY_ERRORS:
        return raw


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{_cut(str(path), 200)}: not a readable JSON file (OSError: {exc.strerror or exc})") from None


def _parse(path: Path, raw: bytes) -> list[LegacyEntry]:
    where = _cut(str(path), 200)
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_object)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        detail = _cut(str(exc).splitlines()[0], 200) if str(exc) else type(exc).__name__
        raise UsageError(f"{where}: not a readable JSON file ({type(exc).__name__}: {detail})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected an object of tuple keys → settings")
    if isinstance(data, _Object) and data.duplicate is not None:
        raise UsageError(f"{where}: entry {_cut(data.duplicate)} is written twice (a JSON object holds one value per "
                         "key; which one was meant?)")
    entries = []
    for key, value in data.items():
        twice = _duplicate(value)
        try:
            if twice is not None:
                raise ValueError(f"key {_r(twice)} is written twice in one object (which value was meant?)")
            entries.append(_entry(key, value))
        except ValueError as exc:
            raise UsageError(f"{where}: entry {_cut(key)}: {exc}") from None
    by_key: dict[str, LegacyEntry] = {}
    for e in entries:
        first = by_key.setdefault(e.key, e)
        if first is not e:
            raise UsageError(f"{where}: entries {_cut(first.raw_key)} and {_cut(e.raw_key)} are one key written twice")
    return entries


def _one_outcome(where: str, entries: Sequence[LegacyEntry]) -> None:
    """One setting of one configuration has one outcome among the entries a file adds (one source measured it
    once). Entries the database holds already are not among them: an export may write an imported entry and sweep's
    own measurement of the same setting side by side, each from its own source."""
    seen: dict[tuple[str, str, int, str], LegacyEntry] = {}
    for e in entries:
        known = seen.setdefault((e.pipeline, e.scheduler, e.steps, e.setting.key), e)
        if (known.time, known.speedup, known.score_loss) != (e.time, e.speedup, e.score_loss):
            raise UsageError(f"{where}: entries {_cut(known.raw_key)} and {_cut(e.raw_key)} give the same setting "
                             "different time, speedup or score_loss")


def parse_legacy(path: Path) -> list[LegacyEntry]:
    """Every entry of a legacy file, validated; UsageError names the file, the entry and what is wrong."""
    entries = _parse(path, _read(path))
    _one_outcome(_cut(str(path), 200), entries)
    return entries


def _get_or_create(session: Session, table: type[Base], key: str, **fields: object) -> int:
    found = session.scalar(select(table.id).where(table.key == key))  # type: ignore[attr-defined]
    if found is not None:
        return int(found)
    row = table(key=key, **fields)
    session.add(row)
    session.flush()
    return int(row.id)  # type: ignore[attr-defined]


def _text(text: str) -> str:
    """A file system name as text any database takes: bytes that are not UTF-8 written as ``\\xff``."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def _text_unfit(text: str, length: int | None) -> str | None:
    if "\x00" in text:
        return "holds a NUL character (PostgreSQL text cannot)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    if length is not None and len(text) > length:
        return f"is {len(text)} characters long, more than the {length} its column holds"
    return None


def _unfit(row: Base) -> str | None:
    """Why ``row`` cannot be stored on SQLite or PostgreSQL (None: it can): strings longer than their String(n)
    column, a NUL or a lone surrogate in any text (JSON included), integers beyond 32 bits."""
    table = type(row).__table__  # type: ignore[attr-defined]
    for column in table.columns:
        value = getattr(row, column.key, None)
        problem = None
        if isinstance(column.type, JSON):
            stack = [value]
            while stack and problem is None:
                item = stack.pop()
                if isinstance(item, dict):
                    stack.extend([*item.keys(), *item.values()])
                elif isinstance(item, list):
                    stack.extend(item)
                elif isinstance(item, str):
                    problem = _text_unfit(item, None)
        elif isinstance(value, str):
            problem = _text_unfit(value, getattr(column.type, "length", None))
        elif isinstance(value, int) and not isinstance(value, bool) and isinstance(column.type, Integer) \
                and not isinstance(column.type, BigInteger) and not -INT32_MAX - 1 <= value <= INT32_MAX:
            problem = f"{_r(value)} does not fit a 32-bit integer"
        if problem is not None:
            return f"{table.name}.{column.name} {problem}"
    return None


@dataclass(frozen=True)
class _Source:
    """The file an import reads: named for people, identified by its content."""

    name: str
    path: str
    digest: str

    @property
    def key(self) -> str:
        return f"{IMPORTED}{self.digest}"

    @property
    def origin(self) -> str:
        return f"import:{self.name}@{self.digest}"

    def rows(self) -> tuple[EnvironmentRow, QualityProtocolRow, TimingProtocolRow]:
        return (EnvironmentRow(key=self.key, device=f"imported from {self.name}", details={"origin": self.path}),
                QualityProtocolRow(key=self.key, prompt_source=self.origin, prompts=[], prompts_sha256="",
                                   prompt_count=0, seed=0, scorer=f"imported:{self.name}"),
                TimingProtocolRow(key=self.key, images=0, policy={}))


def _config_rows(e: LegacyEntry) -> tuple[SpeedConfigRow, BaseConfigRow]:
    base = e.base()
    speed = base.speed
    return (SpeedConfigRow(key=speed.key, pipeline=speed.pipeline, scheduler=speed.scheduler, steps=speed.steps,
                           height=speed.height, width=speed.width, dtype=speed.dtype, batch_size=speed.batch_size),
            BaseConfigRow(key=base.key, speed_config_id=0, pipeline=base.pipeline, model=base.model,
                          weights=base.weights, scheduler=base.scheduler, steps=base.steps, height=base.height,
                          width=base.width, dtype=base.dtype, batch_size=base.batch_size))


def _entry_rows(e: LegacyEntry, source: _Source, now: datetime, ids: Mapping[str, int]) -> list[Base]:
    """What an entry stores besides its identities (``ids``: env, quality, timing, speed, base)."""
    baseline_time = e.time * e.speedup
    env, quality, timing, speed, base = (ids.get(k, 0) for k in ("env", "quality", "timing", "speed", "base"))
    return [
        SpeedBaselineRow(speed_config_id=speed, environment_id=env, timing_protocol_id=timing, time=baseline_time,
                         time_spread=0.0, batch_seconds=[baseline_time], source="imported", image_digests=[],
                         weights="imported", worker=source.origin),
        QualityBaselineRow(base_config_id=base, quality_protocol_id=quality, scores=None, clip_score=None,
                           image_digests=[], environment_id=env, worker=source.origin),
        SpeedTrialRow(speed_config_id=speed, environment_id=env, timing_protocol_id=timing, setting_key=e.setting.key,
                      settings=e.setting.as_dict(), status="done", weights="imported", weights_key="",
                      first_speedup=e.speedup, first_source=f"imported from {source.name}", first_time=e.time,
                      first_baseline_time=baseline_time, worker=source.origin, started_at=now),
        QualityTrialRow(base_config_id=base, quality_protocol_id=quality, setting_key=e.setting.key,
                        settings=e.setting.as_dict(), status="done", score_loss=e.score_loss, environment_id=env,
                        worker=source.origin, started_at=now),
        LegacyEntryRow(origin=source.origin, key=e.raw_key, value=dict(e.raw_value or e.value())),
    ]


def _target_row(e: LegacyEntry, source: _Source, upper_bound: float | None, ids: Mapping[str, int]) -> TargetRow:
    return TargetRow(base_config_id=ids.get("base", 0), quality_protocol_id=ids.get("quality", 0),
                     environment_id=ids.get("env", 0), timing_protocol_id=ids.get("timing", 0), max_loss=e.max_loss,
                     difficulty=f"legacy {e.kind}", factor=None, target=float(e.kind), upper_bound=upper_bound,
                     setting_key=e.setting.key, origin=source.origin)


def _check_fits(where: str, source: _Source, entries: Sequence[LegacyEntry], now: datetime) -> None:
    """Every row the import would write fits its columns (before the transaction opens)."""
    for row in source.rows():
        problem = _unfit(row)
        if problem is not None:
            raise UsageError(f"{where}: cannot be stored: {problem}")
    for e in entries:
        rows: list[Base] = [*_config_rows(e), *_entry_rows(e, source, now, {})]
        if e.kind != LEGACY_UPBOUND:
            rows.append(_target_row(e, source, e.speedup, {}))
        for row in rows:
            problem = _unfit(row)
            if problem is not None:
                raise UsageError(f"{where}: entry {_cut(e.raw_key)}: cannot be stored: {problem}")


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def _held(s: Session, entries: Sequence[LegacyEntry]) -> list[bool]:
    """Per entry, whether the database holds it already (rules 1 and 2 of the module's docstring)."""
    imported: dict[str, set[str]] = defaultdict(set)
    for key, value in s.execute(select(LegacyEntryRow.key, LegacyEntryRow.value)):
        imported[_logical_key(key)].add(_canonical(value))
    pipelines = sorted({e.pipeline for e in entries})
    speeds: dict[tuple[str, str, int, str], list[tuple[set[float], set[float], bool]]] = defaultdict(list)
    for pipeline, scheduler, steps, key, first_time, time, first_speedup, speedup, env in s.execute(
            select(SpeedConfigRow.pipeline, SpeedConfigRow.scheduler, SpeedConfigRow.steps, SpeedTrialRow.setting_key,
                   SpeedTrialRow.first_time, SpeedTrialRow.time, SpeedTrialRow.first_speedup, SpeedTrialRow.speedup,
                   EnvironmentRow.key)
            .join(SpeedConfigRow, SpeedTrialRow.speed_config_id == SpeedConfigRow.id)
            .join(EnvironmentRow, SpeedTrialRow.environment_id == EnvironmentRow.id)
            .where(SpeedTrialRow.status == "done", SpeedConfigRow.pipeline.in_(pipelines))):
        speeds[(pipeline, scheduler, steps, key)].append(
            ({first_time, time} - {None}, {first_speedup, speedup} - {None}, not env.startswith(IMPORTED)))
    losses: dict[tuple[str, str, int, str], list[tuple[float, bool]]] = defaultdict(list)
    for pipeline, scheduler, steps, key, loss, protocol in s.execute(
            select(BaseConfigRow.pipeline, BaseConfigRow.scheduler, BaseConfigRow.steps, QualityTrialRow.setting_key,
                   QualityTrialRow.score_loss, QualityProtocolRow.key)
            .join(BaseConfigRow, QualityTrialRow.base_config_id == BaseConfigRow.id)
            .join(QualityProtocolRow, QualityTrialRow.quality_protocol_id == QualityProtocolRow.id)
            .where(QualityTrialRow.status == "done", BaseConfigRow.pipeline.in_(pipelines))):
        if loss is not None:
            losses[(pipeline, scheduler, steps, key)].append((loss, not protocol.startswith(IMPORTED)))
    held = []
    for e in entries:
        if _canonical(e.raw_value) in imported.get(e.key, ()):
            held.append(True)
            continue
        measured = (e.pipeline, e.scheduler, e.steps, e.setting.key)
        speed = [own for times, speedups, own in speeds.get(measured, []) if e.time in times and e.speedup in speedups]
        quality = [own for loss, own in losses.get(measured, []) if loss == e.score_loss]
        held.append(bool(speed) and bool(quality) and (any(speed) or any(quality)))
    return held


def import_legacy(repo: Repository, path: Path) -> tuple[int, int]:
    """Read a legacy file into the database in one transaction. Returns (settings added, targets added); entries
    the database holds already are skipped (see the module's docstring)."""
    where = _cut(str(path), 200)
    raw = _read(path)
    entries = _parse(path, raw)
    source = _Source(_text(path.name), _text(str(path)), hashlib.sha256(raw).hexdigest())
    now = datetime.now(timezone.utc)
    _check_fits(where, source, entries, now)
    upbounds = {(e.pipeline, e.scheduler, e.steps, e.max_loss): e.speedup for e in entries if e.kind == LEGACY_UPBOUND}
    added = targets = 0
    with repo.session() as s:
        fresh = [e for e, held in zip(entries, _held(s, entries), strict=True) if not held]
        if not fresh:
            return 0, 0
        _one_outcome(where, fresh)
        env, quality, timing = source.rows()
        ids = {"env": _get_or_create(s, EnvironmentRow, env.key, device=env.device, details=env.details),
               "quality": _get_or_create(s, QualityProtocolRow, quality.key, prompt_source=quality.prompt_source,
                                         prompts=quality.prompts, prompts_sha256=quality.prompts_sha256,
                                         prompt_count=quality.prompt_count, seed=quality.seed, scorer=quality.scorer),
               "timing": _get_or_create(s, TimingProtocolRow, timing.key, images=timing.images, policy=timing.policy)}
        for e in fresh:
            speed_row, base_row = _config_rows(e)
            speed_id = _get_or_create(s, SpeedConfigRow, speed_row.key, **_fields(speed_row))
            base_row.speed_config_id = speed_id
            base_id = _get_or_create(s, BaseConfigRow, base_row.key, **_fields(base_row))
            here = {**ids, "speed": speed_id, "base": base_id}
            inserted = repo.insert_ignore(s, _entry_rows(e, source, now, here))
            added += inserted[2] or inserted[3]
            if e.kind == LEGACY_UPBOUND:
                continue
            exists = s.scalar(select(TargetRow.id).where(
                TargetRow.base_config_id == base_id, TargetRow.quality_protocol_id == ids["quality"],
                TargetRow.environment_id == ids["env"], TargetRow.timing_protocol_id == ids["timing"],
                TargetRow.max_loss == e.max_loss, TargetRow.difficulty == f"legacy {e.kind}"))
            if exists is None:
                s.add(_target_row(e, source, upbounds.get((e.pipeline, e.scheduler, e.steps, e.max_loss)), here))
                targets += 1
    return added, targets


def _fields(row: Base) -> dict[str, object]:
    """A transient row's column values but its id and key."""
    return {c.key: getattr(row, c.key) for c in type(row).__table__.columns  # type: ignore[attr-defined]
            if c.key not in ("id", "key") and getattr(row, c.key) is not None}


def _origin_shown(origin: str) -> str:
    """``import:NAME@SHA256`` with the digest's first 12 digits."""
    return _cut(re.sub(r"@([0-9a-f]{12})[0-9a-f]{52}$", r" (sha256 \1…)", origin), 160)


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
    measured (at ``max_losses``) for logical keys the imports do not hold; returns the number of entries.
    Two imports holding one logical key with different values refuse the export: one value per key."""
    out: dict[str, object] = {}
    held: dict[str, tuple[str, str]] = {}  # logical key → (origin, value) of the import written
    with repo.session() as s:
        for row in s.scalars(select(LegacyEntryRow).order_by(LegacyEntryRow.id)):
            logical = _logical_key(row.key)
            first = held.setdefault(logical, (row.origin, _canonical(row.value)))
            if first[1] != _canonical(row.value):
                raise UsageError(f"cannot export {_cut(str(path), 200)}: the imports {_origin_shown(first[0])} and "
                                 f"{_origin_shown(row.origin)} hold different values for {_cut(row.key)}, and a legacy "
                                 "file holds one value per key")
            if first[0] == row.origin:
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
        entry = LegacyEntry(str(t["pipeline"]), str(t["scheduler"]), int(t["steps"]), _number_text(float(t["target"])),  # type: ignore[call-overload,arg-type]
                            float(t["max_loss"]), AccelSetting.of(t["settings"]),  # type: ignore[arg-type]
                            float(t["setting_time"]), float(t["setting_speedup"]), float(t["setting_score_loss"]))  # type: ignore[arg-type]
        computed[entry.key] = entry.value()
    for key, value in computed.items():
        if _logical_key(key) not in held:
            out.setdefault(key, value)
    _write_atomically(path, json.dumps(out, indent=2) + "\n")
    return len(out)
