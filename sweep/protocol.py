"""Protocol: how a measurement is made (prompts, seeds, warm-up, scorer); its key separates incomparable results."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from search_space.keys import canonical_json
from search_space.spec import ProtocolSpec
from sweep.prompts import load_prompts, prompts_sha256
from sweep.scoring.clip_score import RANDOM
from sweep.stats import TimingPolicy

# Bump when the way time or score is computed changes, so new numbers never mix with old ones.
MEASUREMENT_VERSION = 2  # 2: warm-up until stable, baseline and accelerated runs paired


@dataclass(frozen=True)
class Protocol:
    prompt_source: str
    prompts: tuple[str, ...]
    seed: int
    """Image i is generated from seed + i, in baseline and accelerated runs alike."""
    timing: TimingPolicy
    scorer_model: str
    scorer_pretrained: str

    @classmethod
    def resolve(cls, spec: ProtocolSpec) -> Protocol:
        return cls(
            spec.prompts, tuple(load_prompts(spec.prompts, spec.num_prompts)), spec.seed,
            TimingPolicy(spec.warmup_tolerance, spec.warmup_cap, spec.min_pairs, spec.max_pairs, spec.target_half_width),
            spec.scorer, spec.scorer_pretrained,
        )

    @classmethod
    def from_row(cls, row: dict[str, object]) -> Protocol:
        """Rebuild a stored protocol (a worker gets its work from the database, not from a space file)."""
        _, model, pretrained = str(row["scorer"]).split(":", 2)
        protocol = cls(
            str(row["prompt_source"]), tuple(row["prompts"]), int(row["seed"]),  # type: ignore[arg-type,call-overload]
            TimingPolicy(**row["timing"]), model, pretrained,  # type: ignore[arg-type]
        )
        if protocol.key != row["key"]:
            raise ValueError("stored protocol does not match its key: written by a different sweep version")
        return protocol

    @property
    def scorer(self) -> str:
        return f"open_clip:{self.scorer_model}:{self.scorer_pretrained}"

    @property
    def scorer_random(self) -> bool:
        return self.scorer_pretrained == RANDOM

    @property
    def prompts_sha256(self) -> str:
        return prompts_sha256(list(self.prompts))

    @property
    def key(self) -> str:
        return canonical_json({
            "measurement": MEASUREMENT_VERSION,
            "prompts_sha256": self.prompts_sha256,
            "prompt_count": len(self.prompts),
            "seed": self.seed,
            "timing": dataclasses.asdict(self.timing),
            "scorer": self.scorer,
        })
