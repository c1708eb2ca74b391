"""Read a space file (TOML) and expand it into base configurations and acceleration settings.

Every mistake in a file becomes one SpaceError naming the file, the entry and the valid choices. What a file
may name (methods, pipelines, schedulers) comes from a Catalogue the caller passes (``sweep.study.catalogue``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

from search_space import defaults
from search_space.base_config import DTYPES, BaseConfig
from search_space.catalogue import Catalogue
from search_space.errors import SpaceError
from search_space.setting import AccelSetting, ParamValue

TOP_LEVEL_KEYS = ("name", "description", "combine", "protocol", "pipelines", "base", "accelerators")
BASE_KEYS = ("pipelines", "schedulers", "steps", "resolutions", "dtype", "batch_size", "accelerators")
PIPELINE_KEYS = ("model", "weights")


@dataclass(frozen=True)
class ProtocolSpec:
    """The measurement protocol as declared; ``sweep.measurement.protocol`` resolves it (reads prompts, hashes them) into a
    quality protocol (prompts, seeds, scorer) and a timing protocol (timing set size, warm-up, pairs)."""

    prompts: str = defaults.PROMPTS
    num_prompts: int = defaults.NUM_PROMPTS
    timing_prompts: int = defaults.TIMING_PROMPTS
    seed: int = defaults.SEED
    scorer: str = defaults.SCORER
    scorer_pretrained: str = defaults.SCORER_PRETRAINED
    # timing: each default is explained in search_space/defaults.py
    warmup_tolerance: float = defaults.WARMUP_TOLERANCE
    warmup_cap: int = defaults.WARMUP_CAP
    min_pairs: int = defaults.MIN_PAIRS
    max_pairs: int = defaults.MAX_PAIRS
    target_half_width: float = defaults.TARGET_HALF_WIDTH


@dataclass(frozen=True)
class Entry:
    """One base configuration and the settings to measure on it (the baseline first)."""

    base: BaseConfig
    settings: tuple[AccelSetting, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Space:
    name: str
    source: str
    protocol: ProtocolSpec
    entries: tuple[Entry, ...]
    description: str = ""
    combine: bool = True

    @property
    def trial_count(self) -> int:
        return sum(len(e.settings) for e in self.entries)


@dataclass
class _Reader:
    """Validation helpers that know which file and entry they are reading."""

    source: str
    where: list[str] = field(default_factory=list)

    def fail(self, message: str) -> SpaceError:
        place = " ".join(self.where)
        return SpaceError(f"{self.source}: {place + ': ' if place else ''}{message}")

    def table(self, data: object, what: str) -> Mapping[str, object]:
        if not isinstance(data, Mapping):
            raise self.fail(f"{what} must be a table")
        return data

    def keys(self, data: Mapping[str, object], valid: Sequence[str]) -> None:
        for key in data:
            if key not in valid:
                raise self.fail(f"unknown key {key!r}; valid: {', '.join(valid)}")

    def as_list(self, value: object) -> list[object]:
        return list(value) if isinstance(value, list) else [value]

    def int_(self, value: object, what: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(f"{what} must be an integer ≥ {minimum}, got {value!r}")
        return value

    def fraction(self, value: object, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise self.fail(f"{what} must be a number in (0, 1), got {value!r}")
        return float(value)

    def str_(self, value: object, what: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(f"{what} must be a non-empty string, got {value!r}")
        return value

    def choice(self, value: object, what: str, valid: Sequence[str]) -> str:
        if value not in valid:
            raise self.fail(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
        return str(value)


PROTOCOL_KEYS = tuple(f.name for f in fields(ProtocolSpec))


def _method(grid: str) -> str:
    """The method of a grid: ``tome@sdxl`` is a second grid of ``tome``."""
    return grid.partition("@")[0]


def _unique(values: Sequence[object]) -> list[object]:
    seen: list[object] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


# how each [protocol] key is read: the reader and its extra argument (an integer's minimum)
_PROTOCOL_READERS: dict[str, tuple[str, ...] | tuple[str, int]] = {
    "prompts": ("str_",), "num_prompts": ("int_", 1), "timing_prompts": ("int_", 1), "seed": ("int_", 0),
    "scorer": ("str_",), "scorer_pretrained": ("str_",), "warmup_tolerance": ("fraction",), "warmup_cap": ("int_", 2),
    "min_pairs": ("int_", 1), "max_pairs": ("int_", 1), "target_half_width": ("fraction",),
}


def _protocol(r: _Reader, data: object) -> ProtocolSpec:
    table = r.table(data, "[protocol]")
    r.where = ["[protocol]"]
    r.keys(table, PROTOCOL_KEYS)
    declared = ProtocolSpec()
    values = {
        key: getattr(r, reader)(table.get(key, getattr(declared, key)), key, *extra)
        for key, (reader, *extra) in _PROTOCOL_READERS.items()
    }
    spec = ProtocolSpec(**values)
    if spec.max_pairs < spec.min_pairs:
        raise r.fail(f"max_pairs ({spec.max_pairs}) must be at least min_pairs ({spec.min_pairs})")
    r.where = []
    return spec


def _accelerator_grids(r: _Reader, data: object, catalogue: Catalogue) -> dict[str, list[dict[str, ParamValue]]]:
    methods = catalogue.methods
    grids: dict[str, list[dict[str, ParamValue]]] = {}
    for name, params in r.table(data, "[accelerators]").items():
        # "tome@sdxl" is a second grid of accelerator "tome" that [[base]] groups can select by that name.
        r.where = [f"[accelerators.{name}]" if name.isidentifier() else f'[accelerators."{name}"]']
        accelerator = _method(name)
        if accelerator not in methods:
            raise r.fail(f"unknown accelerator {accelerator!r}; valid: {', '.join(methods)}")
        cls = methods[accelerator]
        table = r.table(params, f"[accelerators.{name}]")
        valid = [p.name for p in cls.params]
        r.keys(table, valid)
        axes: list[list[ParamValue]] = []
        size = 1
        for spec in cls.params:
            values = r.as_list(table.get(spec.name, spec.default))
            if not values:
                raise r.fail(f"{spec.name} has no values")
            coerced: list[ParamValue] = []
            for value in values:
                try:
                    coerced.append(spec.coerce(value))
                except ValueError as exc:
                    raise r.fail(f"{spec.name}: {exc}") from None
            axes.append([v for v in _unique(coerced)])  # type: ignore[misc]
            size *= len(axes[-1])
        if size > defaults.MAX_SPACE_SETTINGS:
            raise r.fail(f"its axes multiply to {size:,} settings, more than the limit of "
                         f"{defaults.MAX_SPACE_SETTINGS:,}: give fewer values")
        grids[name] = [dict(zip(valid, combo)) for combo in itertools.product(*axes)]  # noqa: B905 (one value per axis)
    r.where = []
    return grids


def _setting_count(
    accelerators: Sequence[str], grids: Mapping[str, list[dict[str, ParamValue]]], combine: bool,
    combinable: Callable[[Sequence[str]], bool],
) -> int:
    """How many settings ``_settings`` makes of these grids (the baseline included), without making them."""
    if not combine:
        return 1 + sum(len(grids[g]) for g in accelerators)
    count = 1
    for n in range(1, len(accelerators) + 1):
        for chosen in itertools.combinations(accelerators, n):
            if combinable([_method(g) for g in chosen]):
                count += math.prod(len(grids[g]) for g in chosen)
    return count


def _settings(
    accelerators: Sequence[str], grids: Mapping[str, list[dict[str, ParamValue]]], combine: bool,
    combinable: Callable[[Sequence[str]], bool],
) -> tuple[AccelSetting, ...]:
    """The baseline, then every setting: with ``combine``, each combination of the grids' parameter sets whose
    methods may share a setting; else each method alone."""
    settings = [AccelSetting.baseline()]
    methods_of = {grid: _method(grid) for grid in accelerators}
    if combine:
        options = [[None, *grids[grid]] for grid in accelerators]
        for combo in itertools.product(*options):
            methods = {methods_of[g]: params for g, params in zip(accelerators, combo) if params is not None}  # noqa: B905
            if methods and combinable(list(methods)):
                settings.append(AccelSetting.of(methods))
    else:
        settings.extend(AccelSetting.of({methods_of[g]: params}) for g in accelerators for params in grids[g])
    return tuple(dict.fromkeys(settings))


def parse_space(data: Mapping[str, object], source: str, catalogue: Catalogue) -> Space:
    """Validate and expand a parsed space file; ``source`` names it in errors."""
    methods, pipelines_known, canonical_alias = catalogue.methods, catalogue.pipelines, catalogue.alias
    r = _Reader(source)
    r.keys(data, TOP_LEVEL_KEYS)
    combine = data.get("combine", True)
    if not isinstance(combine, bool):
        raise r.fail(f"combine must be true or false, got {combine!r}")
    protocol = _protocol(r, data.get("protocol", {}))
    grids = _accelerator_grids(r, data.get("accelerators", {}), catalogue)

    overrides: dict[str, Mapping[str, object]] = {}
    for alias, table in r.table(data.get("pipelines", {}), "[pipelines]").items():
        r.where = [f'[pipelines."{alias}"]']
        alias = canonical_alias(alias)
        r.choice(alias, "pipeline", list(pipelines_known))
        overrides[alias] = r.table(table, f"[pipelines.{alias}]")
        r.keys(overrides[alias], PIPELINE_KEYS)

    groups = data.get("base")
    if not isinstance(groups, list) or not groups:
        raise r.fail("no [[base]] entries: declare at least one group of pipelines × schedulers × steps")
    known_schedulers: list[str] | None = None
    entries: dict[str, Entry] = {}
    counted = 0
    for index, group in enumerate(groups, start=1):
        r.where = [f"[[base]] #{index}"]
        table = r.table(group, "[[base]]")
        r.keys(table, BASE_KEYS)
        for required in ("pipelines", "schedulers", "steps"):
            if required not in table:
                raise r.fail(f"missing {required!r}")
        for axis in ("pipelines", "schedulers", "steps", "resolutions"):
            if axis in table and r.as_list(table[axis]) == []:
                raise r.fail(f"{axis} has no values")
        pipelines = [r.choice(canonical_alias(str(p)), "pipeline", list(pipelines_known)) for p in r.as_list(table["pipelines"])]
        schedulers = [r.str_(s, "scheduler") for s in r.as_list(table["schedulers"])]
        for name in schedulers:
            if known_schedulers is None:
                known_schedulers = catalogue.schedulers()
            r.choice(name, "scheduler", known_schedulers)
        steps = [r.int_(s, "steps", 1) for s in r.as_list(table["steps"])]
        resolutions_raw = table.get("resolutions")
        if isinstance(resolutions_raw, list) and resolutions_raw and not isinstance(resolutions_raw[0], list):
            resolutions_raw = [resolutions_raw]
        resolutions: list[tuple[int, int] | None] = [] if resolutions_raw is not None else [None]
        for pair in r.as_list(resolutions_raw) if resolutions_raw is not None else []:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise r.fail(f"resolutions must be [height, width] pairs, got {pair!r}")
            h, w = (r.int_(v, "resolution", 8) for v in pair)
            if h % 8 or w % 8:
                raise r.fail(f"resolution {h}x{w} must be a multiple of 8")
            resolutions.append((h, w))
        dtype = r.choice(table.get("dtype", "float16"), "dtype", DTYPES)
        batch_size = r.int_(table.get("batch_size", 1), "batch_size", 1)
        default_grids = [g for g in grids if "@" not in g]
        names = [r.choice(a, "accelerator", list(grids)) for a in r.as_list(table.get("accelerators", default_grids))]
        if len({_method(n) for n in names}) != len(names):
            raise r.fail(f"accelerators {names} name one accelerator twice; choose one grid of each")

        per_pipeline = len(schedulers) * len(steps) * len(resolutions)
        for alias in pipelines:
            info = pipelines_known[alias]
            usable = [a for a in names if methods[_method(a)].applies_to(info.denoiser, info.pipeline_class)]
            counted += per_pipeline * _setting_count(usable, grids, combine, catalogue.combinable)
        if counted > defaults.MAX_SPACE_SETTINGS:
            raise r.fail(f"the space expands to {counted:,} settings (baselines included), more than the limit of "
                         f"{defaults.MAX_SPACE_SETTINGS:,}: give fewer values or split it into several spaces")
        for alias, scheduler, n_steps, size in itertools.product(pipelines, schedulers, steps, resolutions):
            info = pipelines_known[alias]
            h, w = size or info.resolution
            r.where = [f"[[base]] #{index}", alias]
            weights = r.choice(overrides.get(alias, {}).get("weights", info.weights[0]), "weights", info.weights)
            model = r.str_(overrides.get(alias, {}).get("model", info.default_model), "model")
            if weights == "pretrained" and model.startswith("builtin:"):
                raise r.fail(f"{alias} has no published weights: with weights = \"pretrained\" set model to a local "
                             "diffusers folder")
            problem = catalogue.scheduler_problem(info, scheduler, n_steps)
            if problem is not None:
                raise r.fail(problem)
            base = BaseConfig(alias, model, weights, scheduler, n_steps, h, w, dtype, batch_size)  # type: ignore[arg-type]
            usable = [a for a in names if methods[_method(a)].applies_to(info.denoiser, info.pipeline_class)]
            notes = tuple(f"{_method(a)}: not applicable to {alias} (supports {methods[_method(a)].describe_support()})"
                          for a in names if a not in usable)
            settings = _settings(usable, grids, combine, catalogue.combinable)
            previous = entries.get(base.key)
            if previous is not None:
                settings = tuple(dict.fromkeys(previous.settings + settings))
                notes = tuple(dict.fromkeys(previous.notes + notes))
            entries[base.key] = Entry(base, settings, notes)
    r.where = []
    name = data.get("name", Path(source).stem)
    description = data.get("description", "")
    return Space(str(name), source, protocol, tuple(entries.values()), str(description), combine)


def load_space(path: str | Path, catalogue: Catalogue) -> Space:
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise SpaceError(f"{path}: no such space file") from None
    except UnicodeDecodeError:
        raise SpaceError(f"{path}: cannot read space file (not UTF-8 text)") from None
    except OSError as exc:  # a folder, no permission, a loop of links, a name too long, a path through a file...
        reason = exc.strerror or exc.__class__.__name__
        raise SpaceError(f"{path}: cannot read space file ({reason})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"{path}: not valid TOML ({exc})") from None
    return parse_space(data, str(path), catalogue)


def preset_names() -> list[str]:
    folder = resources.files("search_space") / "presets"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str, catalogue: Catalogue) -> Space:
    if name not in preset_names():
        raise SpaceError(f"unknown preset {name!r}; valid: {', '.join(preset_names())}")
    resource = resources.files("search_space") / "presets" / f"{name}.toml"
    return parse_space(tomllib.loads(resource.read_text(encoding="utf-8")), f"preset:{name}", catalogue)


def with_weights(space: Space, weights: str, catalogue: Catalogue) -> Space:
    """The space with every base configuration on ``weights`` (``random``: speed only, from the architectures'
    configs; ``pretrained``: the model each names), checked as a space file's ``weights`` would be."""
    entries: dict[str, Entry] = {}
    for entry in space.entries:
        info = catalogue.pipelines[entry.base.pipeline]
        if weights not in info.weights:
            raise SpaceError(f"--weights {weights!r}: {entry.base.pipeline} takes {', '.join(info.weights)}")
        if weights == "pretrained" and entry.base.model.startswith("builtin:"):
            raise SpaceError(f"--weights pretrained: {entry.base.pipeline} has no published weights (its model is "
                             f"{entry.base.model}); give a space file whose model is a local diffusers folder")
        base = dataclasses.replace(entry.base, weights=weights)  # type: ignore[arg-type]
        previous = entries.get(base.key)
        entries[base.key] = entry if previous is None else Entry(
            base, tuple(dict.fromkeys(previous.settings + entry.settings)), tuple(dict.fromkeys(previous.notes + entry.notes)))
        entries[base.key] = dataclasses.replace(entries[base.key], base=base)
    return dataclasses.replace(space, entries=tuple(entries.values()))
