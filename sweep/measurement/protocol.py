"""Protocols: how quality is measured (prompts, seeds, scorer) and how speed is timed (timing set, warm-up,
pairs). Their keys separate incomparable results; the two are independent, so either can change alone."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from search_space.keys import canonical_json
from search_space.spec import ProtocolSpec, Space
from storage.measurements import real_quality
from sweep.measurement.prompts import load_prompts, prompts_sha256
from sweep.measurement.stats import TimingPolicy
from sweep.scoring.clip_score import RANDOM

QUALITY_VERSION = 1
"""Bump when the way a score loss is computed changes."""
MEASUREMENT_VERSION = 4
"""Bump when the way time is measured changes (2: paired over every prompt; 3: first estimates, then precise
paired timing on a timing set; 4: first estimates from a paired pass, and the precise speed-up as the ratio of
the pairs' mean times instead of the median of their ratios), so new numbers never mix with old ones."""


@dataclass(frozen=True)
class QualityProtocol:
    prompt_source: str
    prompts: tuple[str, ...]
    seed: int
    """Image i is generated from seed + i, in baseline and accelerated runs alike."""
    scorer_model: str
    scorer_pretrained: str

    @classmethod
    def from_row(cls, row: dict[str, object]) -> QualityProtocol:
        """Rebuild a stored protocol (a worker gets its work from the database, not from a space file)."""
        _, model, pretrained = str(row["scorer"]).split(":", 2)
        protocol = cls(str(row["prompt_source"]), tuple(row["prompts"]), int(row["seed"]), model, pretrained)  # type: ignore[arg-type,call-overload]
        if protocol.key != row["key"]:
            raise ValueError("stored quality protocol does not match its key: written by a different sweep version")
        return protocol

    @property
    def scorer(self) -> str:
        return f"open_clip:{self.scorer_model}:{self.scorer_pretrained}"

    @property
    def scorer_random(self) -> bool:
        return self.scorer_pretrained == RANDOM

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.seed + i for i in range(len(self.prompts)))

    @property
    def prompts_sha256(self) -> str:
        return prompts_sha256(list(self.prompts))

    @property
    def key(self) -> str:
        return canonical_json({
            "quality": QUALITY_VERSION, "prompts_sha256": self.prompts_sha256, "prompt_count": len(self.prompts),
            "seed": self.seed, "scorer": self.scorer,
        })


@dataclass(frozen=True)
class TimingProtocol:
    images: int
    """Prompts in the timing set: the quality protocol's first ``images`` prompts (their words do not matter)."""
    policy: TimingPolicy

    @classmethod
    def from_row(cls, row: dict[str, object]) -> TimingProtocol:
        protocol = cls(int(row["images"]), TimingPolicy(**row["policy"]))  # type: ignore[arg-type,call-overload]
        if protocol.key != row["key"]:
            raise ValueError("stored timing protocol does not match its key: written by a different sweep version")
        return protocol

    @property
    def key(self) -> str:
        return canonical_json({"measurement": MEASUREMENT_VERSION, "images": self.images, **dataclasses.asdict(self.policy)})


@dataclass(frozen=True)
class Protocol:
    quality: QualityProtocol
    timing: TimingProtocol

    @classmethod
    def for_space(cls, space: Space, force_quality: bool = False) -> Protocol:
        """The space's protocol, reading only the prompts it will use: where no base configuration measures
        quality (random weights, or a random scorer), the timing set's."""
        scorer = QualityProtocol("", (), 0, space.protocol.scorer, space.protocol.scorer_pretrained).scorer
        quality = force_quality or any(real_quality(e.base.weights, scorer) for e in space.entries)
        return cls.resolve(space.protocol, quality_needed=quality)

    @classmethod
    def resolve(cls, spec: ProtocolSpec, *, quality_needed: bool = True) -> Protocol:
        count = spec.num_prompts if quality_needed else min(spec.num_prompts, spec.timing_prompts)
        prompts = tuple(load_prompts(spec.prompts, count))
        policy = TimingPolicy(spec.warmup_tolerance, spec.warmup_cap, spec.min_pairs, spec.max_pairs, spec.target_half_width)
        return cls(
            QualityProtocol(spec.prompts, prompts, spec.seed, spec.scorer, spec.scorer_pretrained),
            TimingProtocol(min(spec.timing_prompts, len(prompts)), policy),
        )

    @property
    def timing_prompts(self) -> tuple[str, ...]:
        return self.quality.prompts[: self.timing.images]

    @property
    def timing_seeds(self) -> tuple[int, ...]:
        return self.quality.seeds[: self.timing.images]
