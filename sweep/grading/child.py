"""The process a pipeline is graded in: ``python -m sweep.grading.child READ_FD WRITE_FD``.

It loads one pipeline — a solution file (``load_pipe()`` or a module-level ``pipe``, optionally ``generate``), or
sweep's own baseline of a base configuration — and answers the grader's requests over two pipes: what the
pipeline is (class, scheduler, a content hash of every component's weights, where it runs), and images for the
prompts and seeds of each request, with the scheduler steps that ran. Everything this process reports can be
subverted by the code it loads; the grader keeps the clock, the seeds, the scores and every decision, and
checks here only what it cannot observe from outside (the weights, the steps).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

# taken before any solution code runs: a solution that replaces hashlib.blake2b later does not reach this module
_blake2b = hashlib.blake2b


_INTEGER_VIEW = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}
_CHUNK = 1 << 24


def _weights_hash(module: Any, key: int) -> str:
    """A keyed checksum of every parameter and buffer (name, dtype, shape, bits), computed where they live.

    Each tensor's bits, read as integers, are multiplied by pseudo-random 64-bit words drawn from ``key`` (the
    grader draws a new key for every evaluation and sends it with the request) and summed modulo 2**64, twice:
    two modules agree only if their tensors are bit for bit the same, except with a chance of about 2**-64 that no
    one can steer without the key. On a GPU this reads 10 GiB of weights in about a second.
    """
    import torch

    digest = _blake2b(digest_size=16, key=key.to_bytes(8, "little"))
    for index, (name, tensor) in enumerate(sorted(module.state_dict(keep_vars=False).items())):
        t = tensor.detach()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if not t.numel():
            continue
        bits = t.contiguous().view(-1).view(getattr(torch, _INTEGER_VIEW[t.element_size()]))
        generator = torch.Generator(device=t.device).manual_seed((key + 7919 * index) % 2**63)
        sums = torch.zeros(2, dtype=torch.int64, device=t.device)
        for start in range(0, bits.numel(), _CHUNK):
            chunk = bits[start:start + _CHUNK].to(torch.int64)
            words = torch.randint(-2**62, 2**62, (2, chunk.numel()), generator=generator, device=t.device,
                                  dtype=torch.int64)
            sums += (words * chunk).sum(dim=1)
        digest.update(sums.cpu().numpy().tobytes())
    return digest.hexdigest()


def observe(pipe: Any, key: int | None) -> dict[str, object]:
    """What the grader compares with the base configuration: classes, scheduler config, weights, device, size.

    ``key`` None leaves the weights' checksum out (the baseline's load: its weights are checksummed under each
    evaluation's own key when that evaluation starts, so a checksum at load would be work thrown away).
    """
    import torch

    components: dict[str, dict[str, object]] = {}
    device = None
    for name, component in sorted(getattr(pipe, "components", {}).items()):
        if isinstance(component, torch.nn.Module):
            components[name] = {"class": type(component).__name__}
            if key is not None:
                components[name]["weights"] = _weights_hash(component, key)
            params = list(component.parameters())
            if params and name in ("unet", "transformer"):
                device = str(params[0].device)
        elif component is not None:
            components[name] = {"class": type(component).__name__}
    scheduler = getattr(pipe, "scheduler", None)
    config = dict(getattr(scheduler, "config", {}) or {})
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    sample = getattr(getattr(denoiser, "config", None), "sample_size", None)
    scale = getattr(pipe, "vae_scale_factor", None)
    native = sample * scale if isinstance(sample, int) and isinstance(scale, int) else None
    return {
        "pipeline_class": type(pipe).__name__,
        "scheduler_class": type(scheduler).__name__,
        "scheduler_config": _plain({k: v for k, v in config.items() if not k.startswith("_")}),
        "components": components,
        "device": device,
        "native_size": native,
    }


def _plain(value: Any) -> Any:
    """JSON-safe: non-finite numbers (``lambda_min_clipped = -inf``) and other objects as their text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _load_solution(path: str, device: str) -> tuple[Any, Callable[..., Any] | None]:
    spec = importlib.util.spec_from_file_location("solution", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules["solution"] = module
    spec.loader.exec_module(module)
    if hasattr(module, "load_pipe"):
        loader = module.load_pipe
        pipe = loader(device) if inspect.signature(loader).parameters else loader()
    elif hasattr(module, "pipe"):
        pipe = module.pipe
    else:
        raise RuntimeError("the file defines neither load_pipe() nor pipe")
    generate = getattr(module, "generate", None)
    if generate is not None and not callable(generate):
        raise RuntimeError("generate is not a function")
    return pipe, generate


def _load_baseline(base: dict[str, object], device: str) -> Any:
    from search_space.base_config import BaseConfig
    from sweep.pipelines.loader import load_pipeline

    return load_pipeline(BaseConfig(**base), device)  # type: ignore[arg-type]


def _generate(pipe: Any, generate: Callable[..., Any] | None, request: dict[str, Any],
              device: str) -> tuple[Any, int, list[list[int]]]:
    import numpy as np
    import torch

    prompts, seeds = list(request["prompts"]), list(request["seeds"])
    call = {"num_inference_steps": int(request["steps"]), "height": int(request["height"]),
            "width": int(request["width"]), "output_type": "np", **dict(request.get("options", {}))}
    generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
    torch.manual_seed(int(seeds[0]))
    scheduler = pipe.scheduler
    original = type(scheduler).step
    ran = [0]
    latents: set[tuple[int, ...]] = set()

    def counted(*args: Any, **kwargs: Any) -> Any:
        ran[0] += 1
        sample = kwargs.get("sample", args[2] if len(args) > 2 else None)
        if isinstance(sample, torch.Tensor):
            latents.add(tuple(sample.shape[-2:]))
        return original(scheduler, *args, **kwargs)

    scheduler.step = counted
    try:
        if generate is not None:
            output = generate(pipe, prompts, generators, **call)
        else:
            output = pipe(prompts, generator=generators, **call)
    finally:
        scheduler.__dict__.pop("step", None)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()  # every stream of this process's device
    images = getattr(output, "images", output)
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    if isinstance(images, list):
        images = np.stack([np.asarray(i, dtype=np.float32) / (255.0 if np.asarray(i).dtype == np.uint8 else 1.0)
                           for i in images])
    if not isinstance(images, np.ndarray):
        raise TypeError(f"the call returned {type(images).__name__}, not images")
    if pipe.scheduler is not scheduler:
        ran[0] = -1  # the scheduler was replaced during the call: its steps were not counted
    return np.asarray(images, dtype=np.float32), ran[0], sorted(list(s) for s in latents)


def main(argv: list[str]) -> int:
    from sweep.grading import wire

    _send, _receive = wire.send, wire.receive  # locals: loaded code cannot rebind them
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the grader asks where a hung call is, then kills it
    read_fd, write_fd = int(argv[0]), int(argv[1])
    device = os.environ.get("SWEEP_DEVICE", "cpu")
    import sweep._compat  # noqa: F401  (before diffusers)

    pipe: Any = None
    generate: Callable[..., Any] | None = None
    while True:
        request, _ = _receive(read_fd)
        op = request.get("op")
        try:
            if op == "load":
                if request.get("path"):
                    pipe, generate = _load_solution(str(request["path"]), device)
                else:
                    pipe = _load_baseline(dict(request["base"]), device)  # type: ignore[arg-type]
                if hasattr(pipe, "set_progress_bar_config"):
                    pipe.set_progress_bar_config(disable=True)
                key = request.get("key")
                _send(write_fd, {"ok": True, "observed": observe(pipe, None if key is None else int(key))})
            elif op == "observe":
                _send(write_fd, {"ok": True, "observed": observe(pipe, int(request["key"]))})
            elif op == "generate":
                images, ran, latents = _generate(pipe, generate, request, device)
                _send(write_fd, {"ok": True, "generated": True})  # the grader's clock stops here, before the images travel
                _send(write_fd, {"ok": True, "steps_ran": ran, "latent_sizes": latents}, images)
            elif op == "exit":
                return 0
            else:
                _send(write_fd, {"ok": False, "error": f"unknown request {op!r}"})
        except BaseException as exc:  # noqa: BLE001 (every failure of the loaded code is the grade's reason)
            last = traceback.extract_tb(exc.__traceback__)[-1:] or None
            where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
            message = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            _send(write_fd, {"ok": False, "error": message + where})
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
