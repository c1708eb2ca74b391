"""Build a diffusers pipeline for a BaseConfig: pretrained weights, or random weights from shipped configs.

Random weights give real timings (speed does not depend on weights) but meaningless images; the runner
marks their quality numbers accordingly.
"""

from __future__ import annotations

import functools
import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import sweep._compat  # noqa: F401  (before diffusers/transformers)
from search_space.base_config import BaseConfig
from sweep.errors import ModelLoadError, SpaceError
from sweep.pipelines.registry import PIPELINES, PipelineInfo, canonical_alias

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

log = logging.getLogger(__name__)

RANDOM_WEIGHTS_SEED = 0


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def scheduler_names() -> list[str]:
    import diffusers

    return sorted(n for n in dir(diffusers) if n.endswith("Scheduler") and n != "SchedulerMixin")


def scheduler_problem(info: PipelineInfo, scheduler: str, steps: int) -> str | None:
    """Why ``scheduler`` with ``steps`` cannot drive ``info``'s pipeline (None: it can).

    A scheduler fits when diffusers lists it as compatible with the model's own scheduler class (the shipped
    ``scheduler_config.json``); its steps are at most the model's training timesteps (more would repeat or
    skip timesteps, and most schedulers refuse them).
    """
    import diffusers

    config = _read_json(info.config_dir / "scheduler" / "scheduler_config.json")
    native = getattr(diffusers, str(config["_class_name"]))
    compatible = sorted(n for n in {native.__name__, *native._compatibles} if hasattr(diffusers, n))
    if scheduler not in compatible:
        return f"scheduler {scheduler} does not fit {info.alias} ({info.pipeline_class}); valid: {', '.join(compatible)}"
    timesteps = int(config.get("num_train_timesteps", 1000))  # type: ignore[call-overload]
    if steps > timesteps:
        return f"steps {steps} exceeds {info.alias}'s {timesteps} training timesteps"
    return None


@functools.lru_cache(maxsize=256)
def denoiser_calls(alias: str, scheduler: str, steps: int) -> int:
    """How many times ``alias``'s denoiser runs in a generation of ``steps`` steps with ``scheduler``: its
    timesteps once set (once per step for DDIM, DPM-Solver++, UniPC; about twice for Heun-type schedulers; PNDM's
    PLMS one more). Rows of one pipeline and shape whose counts are equal make the same denoiser calls."""
    import diffusers

    config = _read_json(pipeline_info(alias).config_dir / "scheduler" / "scheduler_config.json")
    scheduler_object = getattr(diffusers, scheduler).from_config(config)
    scheduler_object.set_timesteps(steps)
    return len(scheduler_object.timesteps)


def _read_json(path: Path) -> dict[str, object]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _build_component(folder: Path, name: str, library: str, class_name: str) -> object:
    if library == "diffusers":
        import diffusers

        cls = getattr(diffusers, class_name)
        config_file = "scheduler_config.json" if name == "scheduler" else "config.json"
        return cls.from_config(_read_json(folder / name / config_file))
    if library == "transformers" and class_name == "CLIPTokenizer":
        from sweep.pipelines.tokenizer import clip_tokenizer

        return clip_tokenizer()
    if library == "transformers" and class_name == "T5Tokenizer":
        from sweep.pipelines.tokenizer import t5_stand_in_tokenizer

        return t5_stand_in_tokenizer()
    if library == "transformers":
        import transformers

        config = dict(_read_json(folder / name / "config.json"))
        model_type = str(config.pop("model_type"))
        return getattr(transformers, class_name)(transformers.AutoConfig.for_model(model_type, **config))
    raise ModelLoadError(f"{folder / 'model_index.json'}: component {name!r} from {library!r} cannot be built")


def build_random(info: PipelineInfo, device: str, dtype: str) -> DiffusionPipeline:
    """The architecture of ``info`` with seeded random weights, built directly on ``device``.

    On the ``meta`` device nothing is allocated: the pipeline exists with its shapes (for parameter counts).
    """
    import diffusers
    import torch

    folder = info.config_dir
    index = _read_json(folder / "model_index.json")
    components: dict[str, object] = {}
    torch.manual_seed(RANDOM_WEIGHTS_SEED)
    for name, spec in sorted(index.items()):
        if name.startswith("_"):
            continue
        if not isinstance(spec, list):
            components[name] = spec  # a plain option such as requires_safety_checker
            continue
        library, class_name = spec
        if library is None:
            components[name] = None
        elif (folder / name / "config.json").exists():  # a module with weights: allocate it on the device
            with torch.device(device):
                components[name] = _build_component(folder, name, library, class_name)
        else:  # schedulers and tokenizers hold no weights and keep their tensors on the CPU
            components[name] = _build_component(folder, name, library, class_name)
    pipe = getattr(diffusers, info.pipeline_class)(**components)
    if device == "meta":
        return pipe
    return pipe.to(device=device, dtype=torch_dtype(dtype))


_WAYS = (
    "provide them as (1) a hub id, online or already in the Hugging Face cache, (2) a local diffusers folder, or "
    "(3) a single .safetensors/.ckpt file, set as `model` in the space file; or use weights = \"random\" for "
    "speed-only runs"
)


def load_pretrained(info: PipelineInfo, reference: str, device: str, dtype: str) -> DiffusionPipeline:
    import diffusers

    cls = getattr(diffusers, info.pipeline_class)
    path = Path(reference).expanduser()
    looks_local = reference.startswith((".", "/", "~")) or reference.endswith((".safetensors", ".ckpt"))
    if looks_local and not path.exists():
        raise ModelLoadError(f"{info.alias}: no such file or folder {reference!r}; {_WAYS}")
    try:
        with warnings.catch_warnings():  # diffusers ≥0.36 renamed torch_dtype; the old name works everywhere
            warnings.simplefilter("ignore", FutureWarning)
            if path.is_file():
                pipe = cls.from_single_file(str(path), torch_dtype=torch_dtype(dtype))
            else:
                pipe = cls.from_pretrained(str(path) if path.is_dir() else reference, torch_dtype=torch_dtype(dtype))
    except Exception as exc:  # diffusers raises OSError, ValueError, HF hub errors...: all mean "cannot load"
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise ModelLoadError(
            f"cannot load {info.alias} weights from {reference!r} ({type(exc).__name__}: {first_line}); {_WAYS}"
        ) from exc
    return pipe.to(device)


def pipeline_info(alias: str) -> PipelineInfo:
    info = PIPELINES.get(canonical_alias(alias))
    if info is None:
        raise SpaceError(f"unknown pipeline {alias!r}; valid: {', '.join(PIPELINES)}")
    return info


def set_scheduler(pipe: DiffusionPipeline, name: str, config: Mapping[str, object] | None = None) -> None:
    """Give ``pipe`` the scheduler class ``name``, built from ``config`` (default: its current scheduler's)."""
    import diffusers

    scheduler_cls = getattr(diffusers, name, None)
    if scheduler_cls is None or not name.endswith("Scheduler"):
        raise SpaceError(f"unknown scheduler {name!r}; valid: {', '.join(scheduler_names())}")
    pipe.scheduler = scheduler_cls.from_config(config if config is not None else pipe.scheduler.config)


def load_pipeline(config: BaseConfig, device: str) -> DiffusionPipeline:
    """The pipeline of ``config`` on ``device`` with its scheduler set, progress bars off."""
    info = pipeline_info(config.pipeline)
    if config.weights == "random":
        pipe = build_random(info, device, config.dtype)
    else:
        pipe = load_pretrained(info, config.model, device, config.dtype)
    pipe.__dict__["_sweep_scheduler_config"] = dict(pipe.scheduler.config)  # the model's own, whatever is set later
    set_scheduler(pipe, config.scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reuse_pipeline(pipe: DiffusionPipeline, config: BaseConfig) -> DiffusionPipeline:
    """``pipe`` (loaded by :func:`load_pipeline`) for another scheduler of the same model: only the scheduler
    changes, built from the model's own scheduler configuration."""
    set_scheduler(pipe, config.scheduler, pipe.__dict__["_sweep_scheduler_config"])
    return pipe
