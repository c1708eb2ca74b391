"""SQLAlchemy 2.x models. Speed and quality are two measurements with their own keys, joined for the bound:

- **speed** (``sweep_speed_*``) belongs to a SpeedConfig (architecture, scheduler, steps, shape, dtype, batch),
  an environment (device, library versions) and a timing protocol; weights and prompts' words do not enter it;
- **quality** (``sweep_quality_*``) belongs to a BaseConfig (weights included) and a quality protocol
  (prompts, seeds, scorer); the machine does not enter it.

Uniqueness of each key is a database constraint, so "skip what is stored" holds even when several processes
write at once. Tables are prefixed ``sweep_`` so Optuna's tables can share the database.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


# -- identities ---------------------------------------------------------------------------------------------


class SpeedConfigRow(Base):
    __tablename__ = "sweep_speed_configs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    pipeline: Mapped[str] = mapped_column(String(64))
    scheduler: Mapped[str] = mapped_column(String(128))
    steps: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(16))
    batch_size: Mapped[int] = mapped_column(Integer)


class BaseConfigRow(Base):
    __tablename__ = "sweep_base_configs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    speed_config_id: Mapped[int] = mapped_column(ForeignKey("sweep_speed_configs.id"), nullable=True)
    """Always set; nullable in the schema only because migration 0004 added it to existing rows."""
    pipeline: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(Text)
    weights: Mapped[str] = mapped_column(String(16))
    scheduler: Mapped[str] = mapped_column(String(128))
    steps: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(16))
    batch_size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    speed_config: Mapped[SpeedConfigRow] = relationship()


class EnvironmentRow(Base):
    __tablename__ = "sweep_environments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    device: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, str]] = mapped_column(JSON)


class QualityProtocolRow(Base):
    """Prompts, seeds and scorer: what a score loss depends on besides the base configuration."""

    __tablename__ = "sweep_quality_protocols"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    prompt_source: Mapped[str] = mapped_column(Text)
    prompts_sha256: Mapped[str] = mapped_column(String(64))
    prompt_count: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    scorer: Mapped[str] = mapped_column(Text)
    prompts: Mapped[list[str]] = mapped_column(JSON)


class TimingProtocolRow(Base):
    """How a speed-up is timed: the timing set's size and the warm-up and pairing policy."""

    __tablename__ = "sweep_timing_protocols"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    images: Mapped[int] = mapped_column(Integer)
    """Prompts in the timing set (their words do not change the work)."""
    policy: Mapped[dict[str, float]] = mapped_column(JSON)


# -- speed --------------------------------------------------------------------------------------------------


class SpeedBaselineRow(Base):
    __tablename__ = "sweep_speed_baselines"
    __table_args__ = (UniqueConstraint("speed_config_id", "environment_id", "timing_protocol_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    speed_config_id: Mapped[int] = mapped_column(ForeignKey("sweep_speed_configs.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("sweep_environments.id"))
    timing_protocol_id: Mapped[int] = mapped_column(ForeignKey("sweep_timing_protocols.id"))
    time: Mapped[float] = mapped_column(Float)
    """Mean seconds per unaccelerated image, warm-up excluded."""
    time_spread: Mapped[float] = mapped_column(Float)
    """Standard deviation of seconds per image across the timed batches."""
    batch_seconds: Mapped[list[float]] = mapped_column(JSON)
    """Seconds per image of each timed batch (a first estimate compares against them)."""
    source: Mapped[str] = mapped_column(Text)
    """``timing set``, ``quality pass`` (the quality baseline's own timed batches) or an import."""
    warmup_runs: Mapped[int] = mapped_column(Integer, default=0)
    image_digests: Mapped[list[str]] = mapped_column(JSON)
    """SHA-256 of the timing set's images: an accelerated run that reproduces them changed nothing."""
    repeat_max_pixel_diff: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Same batch generated twice: 0 = bit-identical (deterministic backend), else the largest pixel difference."""
    weights: Mapped[str] = mapped_column(Text)
    """The weights the pipeline had (``random`` or the model reference): informative, not part of the key."""
    host: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    """The host's state over the timed pass: CPU model and count, CPU and steal seconds per image, GPU busy."""
    worker: Mapped[str] = mapped_column(Text)
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    speed_config: Mapped[SpeedConfigRow] = relationship()
    environment: Mapped[EnvironmentRow] = relationship()
    timing_protocol: Mapped[TimingProtocolRow] = relationship()


class SpeedTrialRow(Base):
    """One setting's speed in one (speed config, environment, timing protocol): a first estimate, and a precise
    paired timing once the setting could be the upper bound."""

    __tablename__ = "sweep_speed_trials"
    __table_args__ = (UniqueConstraint("speed_config_id", "environment_id", "timing_protocol_id", "setting_key", "weights_key",
                                       "packages_key", name="uq_sweep_speed_trials_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    speed_config_id: Mapped[int] = mapped_column(ForeignKey("sweep_speed_configs.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("sweep_environments.id"))
    timing_protocol_id: Mapped[int] = mapped_column(ForeignKey("sweep_timing_protocols.id"))
    setting_key: Mapped[str] = mapped_column(Text)
    settings: Mapped[dict[str, dict[str, object]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    """``done`` or ``failed`` (with ``reason``)."""
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    weights: Mapped[str] = mapped_column(Text)
    """The weights the pipeline had (``random`` or the model reference)."""
    weights_key: Mapped[str] = mapped_column(Text, default="")
    """Part of the key: empty where the speed holds for any weights (a measured speed of a method that does not
    look at the activations); else the weights it was measured with (``random`` or the model), because a
    DBCache-style method's speed depends on them, and so does a failure."""
    packages_key: Mapped[str] = mapped_column(Text, default="")
    """Part of the key: the versions of exactly the packages the setting's methods declare beyond the
    environment's libraries (canonical JSON; empty for the baseline and for methods built into diffusers)."""
    first_speedup: Mapped[float | None] = mapped_column(Float, nullable=True)
    """First estimate: baseline seconds per image / accelerated seconds per image, runs not interleaved."""
    first_ci_half_width: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Relative half-width of the first estimate's interval (drift margin included)."""
    first_source: Mapped[str | None] = mapped_column(Text, nullable=True)
    first_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    first_baseline_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    first_pairs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Pairs of the paired pass the first estimate comes from (a shared estimate: its sibling's)."""
    first_log_sd: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Standard deviation of those pairs' log speed-ups: pooled over a row, the noise its first estimates are
    judged by (:func:`storage.measurements.row_noise`)."""
    speedup: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Precise: median of interleaved baseline/accelerated ratios on the timing set, to a target CI."""
    ci_half_width: Mapped[float | None] = mapped_column(Float, nullable=True)
    pairs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    time: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Precise: mean seconds per accelerated image over the pairs."""
    baseline_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Precise: mean seconds per baseline image over the same pairs."""
    time_spread: Mapped[float | None] = mapped_column(Float, nullable=True)
    warmup_runs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    first_host: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    """The host's state over the first estimate's paired pass (both sides)."""
    precise_host: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    """The host's state over the precise timing's pairs (both sides)."""
    precise_stop: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """Why the precise timing stopped: ``target width`` (its interval as narrow as the protocol asks), ``below
    leader`` (its interval fell wholly under the leader's: it cannot be the bound, and its number is not a
    precise speed-up), or ``max pairs`` (the protocol's limit, interval wider than asked)."""
    precise_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    patched_modules: Mapped[int | None] = mapped_column(Integer, nullable=True)
    worker: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# -- quality ------------------------------------------------------------------------------------------------


class QualityBaselineRow(Base):
    __tablename__ = "sweep_quality_baselines"
    __table_args__ = (UniqueConstraint("base_config_id", "quality_protocol_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_config_id: Mapped[int] = mapped_column(ForeignKey("sweep_base_configs.id"))
    quality_protocol_id: Mapped[int] = mapped_column(ForeignKey("sweep_quality_protocols.id"))
    scores: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)
    """CLIP score of each prompt's image, in prompt order (None for results imported without them)."""
    clip_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    image_digests: Mapped[list[str]] = mapped_column(JSON)
    repeat_max_pixel_diff: Mapped[int | None] = mapped_column(Integer, nullable=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("sweep_environments.id"))
    """Where the images were generated (quality does not depend on it; shown as the source)."""
    worker: Mapped[str] = mapped_column(Text)
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    base_config: Mapped[BaseConfigRow] = relationship()
    quality_protocol: Mapped[QualityProtocolRow] = relationship()
    environment: Mapped[EnvironmentRow] = relationship()


class QualityTrialRow(Base):
    """One setting's CLIP-score loss against its quality baseline: same prompts and seeds, each generated once."""

    __tablename__ = "sweep_quality_trials"
    __table_args__ = (UniqueConstraint("base_config_id", "quality_protocol_id", "setting_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_config_id: Mapped[int] = mapped_column(ForeignKey("sweep_base_configs.id"))
    quality_protocol_id: Mapped[int] = mapped_column(ForeignKey("sweep_quality_protocols.id"))
    setting_key: Mapped[str] = mapped_column(Text)
    settings: Mapped[dict[str, dict[str, object]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    """``done``; ``rejected`` (stopped early: loss above the threshold with 95% confidence); ``failed``."""
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    rejected_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    """For a rejected setting: the threshold it was rejected against."""
    scores: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)
    prompts_used: Mapped[int | None] = mapped_column(Integer, nullable=True)
    clip_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    score_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    """(baseline − accelerated) / baseline mean CLIP score over the prompts used."""
    loss_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    loss_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    """95% confidence interval of the score loss, paired over prompts."""
    image_deviation: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Mean |accelerated − baseline| pixel difference (0 to 1), when the baseline's images were at hand."""
    environment_id: Mapped[int] = mapped_column(ForeignKey("sweep_environments.id"))
    worker: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# -- searches, queue, targets -------------------------------------------------------------------------------


class SearchRow(Base):
    """How a strategy searched one base configuration in one environment for a threshold, and how it decided."""

    __tablename__ = "sweep_searches"
    __table_args__ = (UniqueConstraint(
        "base_config_id", "environment_id", "quality_protocol_id", "timing_protocol_id", "strategy", "max_loss"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_config_id: Mapped[int] = mapped_column(ForeignKey("sweep_base_configs.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("sweep_environments.id"))
    quality_protocol_id: Mapped[int] = mapped_column(ForeignKey("sweep_quality_protocols.id"))
    timing_protocol_id: Mapped[int] = mapped_column(ForeignKey("sweep_timing_protocols.id"))
    strategy: Mapped[str] = mapped_column(String(32))
    max_loss: Mapped[float] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(Integer)
    evaluated: Mapped[int] = mapped_column(Integer)
    """Distinct settings the strategy looked at (measured by it or read back)."""
    space_size: Mapped[int] = mapped_column(Integer)
    stop: Mapped[str] = mapped_column(Text)
    best_setting_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    study_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    log: Mapped[list[str]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class TaskRow(Base):
    """A unit of work in the shared queue, for one (base config, environment, quality and timing protocol):

    - ``baseline``: the quality baseline (where quality is measured) and the speed baseline;
    - ``setting``: one setting's quality pass and first speed estimate;
    - ``precise``: one contender's precise paired timing, queued once the scope's settings are done.

    Workers claim a pending task (or one whose lease expired) under a lease they renew between generations;
    the result is written in the same transaction that marks the task done, guarded by the lease owner.
    """

    __tablename__ = "sweep_tasks"
    __table_args__ = (
        UniqueConstraint("base_config_id", "environment_id", "quality_protocol_id", "timing_protocol_id",
                         "setting_key", "kind"),
        Index("ix_sweep_tasks_claim", "environment_id", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_config_id: Mapped[int] = mapped_column(ForeignKey("sweep_base_configs.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("sweep_environments.id"))
    quality_protocol_id: Mapped[int] = mapped_column(ForeignKey("sweep_quality_protocols.id"))
    timing_protocol_id: Mapped[int] = mapped_column(ForeignKey("sweep_timing_protocols.id"))
    setting_key: Mapped[str] = mapped_column(Text)
    """``{}`` for the baseline."""
    kind: Mapped[str] = mapped_column(String(16))
    measure_quality: Mapped[bool] = mapped_column(Boolean, default=True)
    """Whether this scope's quality pass runs (pretrained weights and a real scorer)."""
    max_loss: Mapped[float] = mapped_column(Float)
    """The threshold that decides which settings are contenders for precise timing."""
    confirm_top: Mapped[int] = mapped_column(Integer)
    cost: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    """Estimated seconds per image of its configuration (see ``storage.queue.claim_key``): the most expensive work
    is started first."""
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """pending → running (leased) → done, or failed once ``max_attempts`` leases expired or errored."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Unix time (the worker's clock) after which another worker may take the task."""
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class TargetRow(Base):
    """A task's target speed-up, stored with the upper bound it came from (a changed bound makes it stale).

    An upper bound is a join: speed of (speed config, environment, timing protocol), quality of (base config,
    quality protocol); the base config determines the speed config.
    """

    __tablename__ = "sweep_targets"
    __table_args__ = (UniqueConstraint(
        "base_config_id", "quality_protocol_id", "environment_id", "timing_protocol_id", "max_loss", "difficulty"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_config_id: Mapped[int] = mapped_column(ForeignKey("sweep_base_configs.id"))
    quality_protocol_id: Mapped[int] = mapped_column(ForeignKey("sweep_quality_protocols.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("sweep_environments.id"))
    timing_protocol_id: Mapped[int] = mapped_column(ForeignKey("sweep_timing_protocols.id"))
    max_loss: Mapped[float] = mapped_column(Float)
    difficulty: Mapped[str] = mapped_column(String(64))
    factor: Mapped[float | None] = mapped_column(Float, nullable=True)
    target: Mapped[float] = mapped_column(Float)
    upper_bound: Mapped[float | None] = mapped_column(Float, nullable=True)
    """The published upper bound the target was computed from."""
    setting_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    """A measured setting that reaches the target (least score loss when chosen), if any."""
    origin: Mapped[str] = mapped_column(Text, default="sweep")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LegacyEntryRow(Base):
    """An entry of an imported legacy ``search_params.json``, as it was written: exported again word for word."""

    __tablename__ = "sweep_legacy_entries"
    __table_args__ = (UniqueConstraint("origin", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    origin: Mapped[str] = mapped_column(Text)
    """``import:FILE`` of the import that stored it."""
    key: Mapped[str] = mapped_column(Text)
    value: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EvaluationRow(Base):
    """One graded solution: a task (by its content), a solution file (by its SHA-256), the environment it was timed
    in and the grading protocol. Stored whole when the evaluation ends, so a killed run loses at most the one in
    progress, and a re-run grades only what is new."""

    __tablename__ = "sweep_evaluations"
    __table_args__ = (UniqueConstraint("task_key", "solution_sha256", "environment_id", "protocol_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[str] = mapped_column(Text)
    task_key: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the task's content (id, difficulty, target, threshold, base configuration or ground truth)."""
    solution_sha256: Mapped[str] = mapped_column(String(64))
    environment_id: Mapped[int] = mapped_column(ForeignKey("sweep_environments.id"))
    protocol_key: Mapped[str] = mapped_column(Text)
    difficulty: Mapped[str] = mapped_column(String(16))
    target: Mapped[float | None] = mapped_column(Float, nullable=True)
    passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    """None: speed graded only (quality unknown)."""
    failure_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seed: Mapped[int] = mapped_column(BigInteger)
    """The evaluation's seed: every prompt's seed of its calls is drawn from it."""
    result: Mapped[dict[str, object]] = mapped_column(JSON)
    """The whole outcome: speed-up and interval, loss, pairs, times, scores, flags, borderline notes, output."""
    solution_path: Mapped[str] = mapped_column(Text)
    gt_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
