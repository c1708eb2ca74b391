"""Generate images and time generation alone.

Timing uses CUDA events on a GPU (wall clock on a CPU) around each batch. Loading, patching, scoring, storage,
progress output and lease renewal all happen outside the timed region: a timed generation holds the
generator's ``gate`` lock, and anything that must run on another thread (a lease heartbeat) takes the gate
first, so it waits until the generation has finished.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sweep.measurement.host import HostMeter, gpu_busy
from sweep.measurement.stats import Paired, TimingPolicy, measure_group, warm_up

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from PIL.Image import Image

    from sweep.accelerators import AppliedSetting

Batch = tuple[list[str], list[int]]
"""Prompts and their seeds (image i ← seed + i)."""


def digest(image: Image) -> str:
    """SHA-256 of an image's pixels: equal digests mean the accelerator changed nothing."""
    return hashlib.sha256(np.asarray(image).tobytes()).hexdigest()


def batches(prompts: Sequence[str], seeds: Sequence[int], size: int) -> list[Batch]:
    return [(list(prompts[i : i + size]), list(seeds[i : i + size])) for i in range(0, len(prompts), size)]


@dataclass
class Generator:
    """Runs prompt batches through a pipeline and times each generation."""

    pipe: DiffusionPipeline
    steps: int
    height: int
    width: int
    device: str
    gate: threading.Lock = field(default_factory=threading.Lock)
    """Held during every timed generation."""
    call: Callable[..., Any] | None = None
    """The call that generates, when an accelerator supplies its own (else the pipeline's ``__call__``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Arguments of every call that the pipeline family needs (see ``PipelineInfo.call_options``)."""
    generation_seconds: float = 0.0
    """Every timed generation so far, warm-up included: the denominator of the overhead ratio."""
    images: int = 0
    host: HostMeter = field(init=False)
    """The host's state around each timed call (read outside the timed region)."""
    label: str = "baseline"
    """What the timed calls run: ``baseline`` or the applied setting's key (for the run log)."""
    run_log: RunLog | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.host = HostMeter(self.device)
        path = os.environ.get(RUN_LOG_ENV)
        if path:
            self.run_log = RunLog(path, self.device)

    def run(self, batch: Batch) -> tuple[float, list[Image]]:
        import torch

        prompts, seeds = batch
        call = self.call or self.pipe
        # Image i always starts from seed + i; accelerators that draw random numbers (tomesd's token
        # matching forks the global RNG) get the same stream for the same batch in every run.
        torch.manual_seed(seeds[0])
        generators = [torch.Generator(device=self.device).manual_seed(seed) for seed in seeds]
        cuda = torch.device(self.device).type == "cuda"
        with self.gate:
            logged = self.run_log.before() if self.run_log else None
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize(self.device)
                host = self.host.before()
                start.record()
            else:
                host = self.host.before()
                began = time.perf_counter()
            images = call(
                prompts, num_inference_steps=self.steps, height=self.height, width=self.width,
                generator=generators, output_type="pil", **self.options,
            ).images
            if cuda:
                end.record()
                end.synchronize()
                seconds = start.elapsed_time(end) / 1000
            else:
                seconds = time.perf_counter() - began
            self.host.after(host, len(prompts))
            if self.run_log and logged:
                self.run_log.after(logged, self.label, self.steps, len(prompts), seconds)
        self.generation_seconds += seconds
        self.images += len(prompts)
        return seconds, images


def switches(gen: Generator, applied: AppliedSetting) -> tuple[Callable[[], None], Callable[[], None]]:
    """(accelerate, restore): switch the generator's pipeline to the setting and back (outside any timing)."""
    def accelerate() -> None:
        applied.apply()
        gen.call = applied.call
        gen.label = applied.setting.key

    def restore() -> None:
        applied.remove()
        gen.call = None
        gen.label = "baseline"

    return accelerate, restore


def _cpu_probe() -> int:
    """A fixed piece of pure-Python work (about 2 ms on a current server core): its time measures the CPU's speed."""
    return sum(i * i for i in range(20_000))


RUN_LOG_ENV = "SWEEP_RUN_LOG"
"""Where set, every timed call appends one JSON line to this file (see :class:`RunLog`)."""


class _Collections:
    """Python's garbage collections in this process and their pauses, counted by one ``gc`` callback (registered
    once, by the first run log: the collector is the process's, not a generator's)."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._started: float | None = None
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.count += 1
            self.seconds += time.perf_counter() - self._started
            self._started = None


_collections: _Collections | None = None


class RunLog:
    """A diagnostic log of every timed call: its seconds, and what ran inside the timed region besides the
    pipeline: this process's CPU time, Python's garbage collections (how many, and their pauses) and the CUDA
    caching allocator's device allocations and frees (each a synchronous ``cudaMalloc``/``cudaFree``); and, right
    after the call, how fast the CPU is then (``cpu_probe_ms``: a fixed piece of pure-Python work, timed) and the
    GPU's busy fraction. For finding where a setting's occasional slow calls come from. The process's CPU time
    alone cannot tell a slow CPU from a slow GPU: waiting for the GPU (``synchronize``) spins a CPU by default, so
    CPU time follows wall time either way; the probe's time moves only with the CPU. Readings are taken outside
    the timed region, and the collector's callback only runs when a collection does."""

    def __init__(self, path: str, device: str) -> None:
        global _collections
        self.path = path
        self.device = device
        if _collections is None:
            _collections = _Collections()
        self.collections = _collections

    def _allocator(self) -> dict[str, int]:
        import torch

        if torch.device(self.device).type != "cuda":
            return {}
        stats = torch.cuda.memory_stats(self.device)
        return {k: int(stats.get(k, 0)) for k in ("num_device_alloc", "num_device_free", "num_alloc_retries")}

    def before(self) -> tuple[int, float, dict[str, int], float]:
        return self.collections.count, self.collections.seconds, self._allocator(), time.process_time()

    def after(self, started: tuple[int, float, dict[str, int], float], label: str, steps: int, images: int,
              seconds: float) -> None:
        cpu = time.process_time() - started[3]
        collections, gc_seconds, allocator, _ = started
        now = self._allocator()
        began = time.perf_counter()
        _cpu_probe()
        probe = time.perf_counter() - began
        record = {"label": label, "steps": steps, "images": images, "seconds": seconds, "cpu_seconds": cpu,
                  "cpu_probe_ms": 1000 * probe, "gpu_busy": gpu_busy(self.device),
                  "gc_collections": self.collections.count - collections,
                  "gc_seconds": self.collections.seconds - gc_seconds,
                  **{k: now[k] - allocator.get(k, 0) for k in now}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def mean_abs_deviation(first: Sequence[Image], second: Sequence[Image]) -> float:
    """Mean absolute pixel difference between two runs' images, as a fraction of the 0-255 range."""
    total = sum(float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())
                for a, b in zip(first, second, strict=True))
    return total / len(first) / 255.0


def max_pixel_difference(first: Sequence[Image], second: Sequence[Image]) -> int:
    """Largest absolute difference of any pixel channel between two runs' images (0 to 255)."""
    return max(
        int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max()) for a, b in zip(first, second, strict=True)
    )


@dataclass(frozen=True)
class TimedPass:
    """One pass over batches: per-image seconds of each timed batch, and every image in order."""

    seconds_per_image: tuple[float, ...]
    images: list[Image]
    warmup_runs: int
    repeat_max_pixel_diff: int | None = None
    host: dict[str, object] | None = None
    """The host's state over the timed pass (see :mod:`sweep.measurement.host`)."""

    @property
    def digests(self) -> list[str]:
        return [digest(i) for i in self.images]

    @property
    def time(self) -> float:
        return statistics.fmean(self.seconds_per_image)

    @property
    def spread(self) -> float:
        return statistics.stdev(self.seconds_per_image) if len(self.seconds_per_image) > 1 else 0.0


def stable_pass(gen: Generator, work: Sequence[Batch], policy: TimingPolicy) -> TimedPass:
    """Warm up on the first batch until two runs agree, then time one pass over every batch.

    The warm-up's last images and the pass's first batch come from the same prompts and seeds, so their
    difference says whether the backend is deterministic, at no extra cost.
    """
    warm_images: list[Image] = []

    def warm_run() -> float:
        seconds, images = gen.run(work[0])
        warm_images[:] = images
        return seconds

    warm = warm_up(warm_run, policy.warmup_tolerance, policy.warmup_cap)
    seconds, images = [], []
    mark = gen.host.mark()
    for batch in work:
        s, batch_images = gen.run(batch)
        seconds.append(s / len(batch[0]))
        images.extend(batch_images)
    return TimedPass(tuple(seconds), images, len(warm.seconds), max_pixel_difference(warm_images, images[: len(warm_images)]),
                     gen.host.since(mark))


def quick_pass(gen: Generator, work: Sequence[Batch]) -> TimedPass:
    """One untimed warm-up generation of the first batch, then one timed pass over every batch."""
    gen.run(work[0])
    seconds, images = [], []
    for batch in work:
        s, batch_images = gen.run(batch)
        seconds.append(s / len(batch[0]))
        images.extend(batch_images)
    return TimedPass(tuple(seconds), images, 1)


@dataclass(frozen=True)
class PairedPass:
    """One pass over the batches, each run by the baseline and the setting back to back (A B, B A, ...)."""

    baseline_seconds: tuple[float, ...]
    accelerated_seconds: tuple[float, ...]
    """Per-image seconds of each batch's baseline and accelerated run."""
    baseline_images: list[Image]
    images: list[Image]
    """The accelerated images, in batch order."""
    host: dict[str, object] | None = None
    """The host's state over the pass's timed calls, both sides."""


def paired_pass(
    gen: Generator, work: Sequence[Batch], accelerate: Callable[[], None], restore: Callable[[], None], *,
    warm: bool = False,
) -> PairedPass:
    """One untimed warm-up generation of the first batch with the setting (none when ``warm``: the setting has
    just generated, in its quality pass), then each batch by both sides, adjacent, the order alternating: a slow
    stretch of the machine slows both runs of its pair, never one side of the comparison alone. Returns with the
    pipeline restored."""
    base_s: list[float] = []
    accel_s: list[float] = []
    base_images: list[Image] = []
    images: list[Image] = []

    def run(index: int, accelerated: bool) -> None:
        (accelerate if accelerated else restore)()
        seconds, out = gen.run(work[index])
        (accel_s if accelerated else base_s).append(seconds / len(work[index][0]))
        (images if accelerated else base_images).extend(out)

    try:
        accelerate()
        if not warm:
            gen.run(work[0])
        mark = gen.host.mark()
        for index in range(len(work)):
            for accelerated in ((True, False) if index % 2 == 0 else (False, True)):  # the warm side first, then alternating
                run(index, accelerated)
    finally:
        restore()
    return PairedPass(tuple(base_s), tuple(accel_s), base_images, images, gen.host.since(mark))


@dataclass(frozen=True)
class CheckedPass:
    """The setting over every batch, then the baseline over one of them (the check) right after: where the check is
    within the tolerance of the reference, the reference is the baseline (the check a gate, not a correction)."""

    baseline_seconds: tuple[float, ...] | None
    """The reference's per-image seconds where the check passed; None where it drifted."""
    accelerated_seconds: tuple[float, ...]
    drift: float
    """The check run's seconds / the reference's for the same batch."""
    images: list[Image]
    check: int
    check_images: list[Image]
    host: dict[str, object] | None = None

    @property
    def passed(self) -> bool:
        return self.baseline_seconds is not None


def checked_pass(
    gen: Generator, work: Sequence[Batch], accelerate: Callable[[], None], restore: Callable[[], None],
    reference: Sequence[float], check: int, tolerance: float, *, warm: bool = False,
) -> CheckedPass:
    """One untimed warm-up run with the setting (none when ``warm``), the setting over every batch, then the
    baseline over batch ``check``: once untimed (the first call after the setting's hooks are removed may carry a
    cost of its own), once timed. ``reference``: the speed baseline's per-image seconds of each batch, timed in
    this process. The check passes within ``tolerance`` of the reference (in log); a drifted check returns no
    baseline: the caller measures a paired pass instead. Returns with the pipeline restored."""
    accel_s: list[float] = []
    images: list[Image] = []
    try:
        accelerate()
        if not warm:
            gen.run(work[0])
        mark = gen.host.mark()
        for batch in work:
            seconds, out = gen.run(batch)
            accel_s.append(seconds / len(batch[0]))
            images.extend(out)
        restore()
        gen.run(work[check])
        seconds, check_images = gen.run(work[check])
        drift = seconds / len(work[check][0]) / reference[check]
    finally:
        restore()
    passed = abs(math.log(drift)) <= tolerance
    return CheckedPass(tuple(reference) if passed else None, tuple(accel_s), drift, images, check, check_images,
                       gen.host.since(mark))


@dataclass(frozen=True)
class PairedRun:
    paired: Paired
    """Per-image seconds of the baseline (A) and accelerated (B) runs, pair by pair."""
    warmup_runs: int
    stop: str
    """Why its timing stopped (``sweep.measurement.stats.STOPS``)."""
    host: dict[str, object] | None = None
    """The host's state over the pairs, both sides."""

    @property
    def seconds_per_image(self) -> float:
        return statistics.fmean(self.paired.accelerated_seconds)

    @property
    def baseline_seconds_per_image(self) -> float:
        return statistics.fmean(self.paired.baseline_seconds)

    @property
    def spread(self) -> float:
        return statistics.stdev(self.paired.accelerated_seconds) if self.paired.pairs > 1 else 0.0


def group_run(
    gen: Generator, work: Sequence[Batch], switchers: Sequence[tuple[Callable[[], None], Callable[[], None]]],
    policy: TimingPolicy, below: float | None = None, *, settle: bool = True,
) -> list[PairedRun]:
    """Warm up each setting (its ``(accelerate, restore)`` pair), then time them together against one baseline, a
    round at a time (:func:`sweep.measurement.stats.measure_group`). Switching happens outside the timed region;
    returns with the pipeline restored (an exception too), one :class:`PairedRun` per setting (its stop reason in
    ``stop``; its ``host`` is the reading over the whole group's rounds, with ``group``: an id shared by the
    settings timed together, their number, and the rounds run, i.e. the baseline runs they shared)."""
    current: list[int | None] = [None]

    def switch(member: int | None) -> None:
        previous, current[0] = current[0], member  # before switching: a setting that fails half-applied is undone too
        if previous == member:
            return
        if previous is not None:
            switchers[previous][1]()
        if member is not None:
            switchers[member][0]()

    def run(batch: int, member: int | None) -> float:
        switch(member)
        seconds, _ = gen.run(work[batch])
        return seconds / len(work[batch][0])

    def restore_all() -> None:  # idempotent: whatever was applied, the pipeline is the baseline's
        failures = []
        for _accelerate, restore in switchers:
            try:
                restore()
            except Exception as exc:  # the others are restored still; the first failure is raised
                failures.append(exc)
        if failures:
            raise failures[0]

    warmups: list[int] = []
    try:
        for j in range(len(switchers)):
            switch(j)
            warmups.append(len(warm_up(lambda: gen.run(work[0])[0], policy.warmup_tolerance, policy.warmup_cap).seconds))
        mark = gen.host.mark()
        timed, rounds = measure_group(run, len(switchers), len(work), policy, below, settle=settle)
    finally:
        restore_all()
    host = gen.host.since(mark)
    if len(switchers) > 1:  # which timings were made together, and the baseline runs they shared
        host = {**(host or {}), "group": {"id": uuid.uuid4().hex[:12], "settings": len(switchers), "rounds": rounds}}
    return [PairedRun(paired, warm, stop, host) for (paired, stop), warm in zip(timed, warmups, strict=True)]
