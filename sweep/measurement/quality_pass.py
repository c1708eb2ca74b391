"""The quality pass: the protocol's prompts generated once, each image scored against its prompt.

The baseline's images and per-prompt scores are generated once per (base configuration, quality protocol);
a setting's pass generates each prompt once and stops as soon as its loss is above max-loss with 95%
confidence (sequential rejection, paired over prompts). Its timed batches (all but the first, which warms the
patched pipeline up) also give the setting a first speed estimate at no extra cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sweep.accelerators import AppliedSetting
from sweep.measurement.measure import (
    Batch,
    Generator,
    digest,
    max_pixel_difference,
    mean_abs_deviation,
    switches,
)
from sweep.measurement.stats import LossEstimate, paired_loss, reject
from sweep.scoring.base import Scorer

if TYPE_CHECKING:
    from PIL.Image import Image

CHANGED_NOTHING = "changed nothing: every image is identical to the baseline's"


@dataclass(frozen=True)
class QualityBaselineRun:
    scores: list[float]
    images: list[Image]
    seconds_per_image: tuple[float, ...]
    """Every batch timed (the first batch is generated twice: once to warm up, once timed)."""
    repeat_max_pixel_diff: int
    host: dict[str, object] | None = None
    """The host's state over the timed batches."""

    @property
    def digests(self) -> list[str]:
        return [digest(i) for i in self.images]


def quality_baseline(gen: Generator, work: Sequence[Batch], scorer: Scorer) -> QualityBaselineRun:
    """Every prompt once, unaccelerated; the first batch twice, so its repeat shows whether the backend is
    deterministic and the timed batches are warm."""
    _, warm_images = gen.run(work[0])
    mark = gen.host.mark()
    seconds: list[float] = []
    images: list[Image] = []
    scores: list[float] = []
    for batch in work:
        s, batch_images = gen.run(batch)
        seconds.append(s / len(batch[0]))
        images.extend(batch_images)
        scores.extend(scorer.score(batch_images, batch[0]))
    return QualityBaselineRun(scores, images, tuple(seconds), max_pixel_difference(warm_images, images[: len(warm_images)]),
                              gen.host.since(mark))


@dataclass(frozen=True)
class QualityRun:
    status: str
    """``done``, ``rejected`` or ``failed``."""
    reason: str | None
    scores: list[float]
    estimate: LossEstimate | None
    seconds_per_image: tuple[float, ...]
    """The timed batches (every batch but the first)."""
    patched: int
    image_deviation: float | None = None
    rejected_at: float | None = None
    digests: list[str] = field(default_factory=list)

    @property
    def prompts_used(self) -> int:
        return len(self.scores)


def quality_pass(
    gen: Generator, work: Sequence[Batch], applied: AppliedSetting, baseline_scores: Sequence[float],
    baseline_digests: Sequence[str], scorer: Scorer, max_loss: float, *, baseline_images: Sequence[Image] | None = None,
) -> QualityRun:
    """Generate each prompt once with the setting applied; after each batch, stop if the loss is above
    ``max_loss`` with 95% confidence. Returns with the setting removed."""
    if not sum(baseline_scores) > 0:
        return QualityRun("failed", "baseline CLIP score is 0: score loss undefined", [], None, (), 0)
    scores: list[float] = []
    digests: list[str] = []
    seconds: list[float] = []
    images: list[Image] = []
    estimate: LossEstimate | None = None
    accelerate, restore = switches(gen, applied)
    try:
        accelerate()
        for index, batch in enumerate(work):
            s, batch_images = gen.run(batch)
            if index:
                seconds.append(s / len(batch[0]))
            scores.extend(scorer.score(batch_images, batch[0]))
            digests.extend(digest(i) for i in batch_images)
            if baseline_images is not None:
                images.extend(batch_images)
            estimate = paired_loss(baseline_scores, scores)
            if index < len(work) - 1 and estimate is not None and reject(estimate, max_loss, looks=len(work)):
                return QualityRun("rejected", f"score loss above {100 * max_loss:g}% with 95% confidence after "
                                  f"{len(scores)} of {len(baseline_scores)} prompts", scores, estimate, tuple(seconds),
                                  applied.patched, rejected_at=max_loss, digests=digests)
    finally:
        restore()
    if digests == list(baseline_digests):
        return QualityRun("failed", CHANGED_NOTHING, scores, estimate, tuple(seconds), applied.patched, digests=digests)
    deviation = mean_abs_deviation(images, baseline_images) if baseline_images is not None else None
    return QualityRun("done", None, scores, estimate, tuple(seconds), applied.patched, deviation, digests=digests)
