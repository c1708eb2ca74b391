"""SQLAlchemy 2.x models: base configurations, environments, protocols, baselines and trials.

Uniqueness of (base config, environment, protocol[, setting]) is a database constraint, so "skip what is
stored" holds even when several processes write at once.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class BaseConfigRow(Base):
    __tablename__ = "sweep_base_configs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
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


class EnvironmentRow(Base):
    __tablename__ = "sweep_environments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    device: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, str]] = mapped_column(JSON)


class ProtocolRow(Base):
    __tablename__ = "sweep_protocols"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    prompt_source: Mapped[str] = mapped_column(Text)
    prompts_sha256: Mapped[str] = mapped_column(String(64))
    prompt_count: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    timing: Mapped[dict[str, float]] = mapped_column(JSON)
    scorer: Mapped[str] = mapped_column(Text)
    scorer_random: Mapped[bool] = mapped_column(Boolean)
    prompts: Mapped[list[str]] = mapped_column(JSON)


class BaselineRow(Base):
    __tablename__ = "sweep_baselines"
    __table_args__ = (UniqueConstraint("base_config_id", "environment_id", "protocol_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_config_id: Mapped[int] = mapped_column(ForeignKey("sweep_base_configs.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("sweep_environments.id"))
    protocol_id: Mapped[int] = mapped_column(ForeignKey("sweep_protocols.id"))
    time: Mapped[float] = mapped_column(Float)
    """Mean seconds per image over the measured prompts, warm-up excluded."""
    time_spread: Mapped[float] = mapped_column(Float)
    """Standard deviation of seconds per image across the measured batches."""
    warmup_runs: Mapped[int] = mapped_column(Integer, default=0)
    repeat_max_pixel_diff: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Same batch generated twice: 0 = bit-identical (deterministic backend), else the largest pixel difference."""
    clip_score: Mapped[float] = mapped_column(Float)
    image_digests: Mapped[list[str]] = mapped_column(JSON)
    n_images: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(Text)
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    base_config: Mapped[BaseConfigRow] = relationship()
    environment: Mapped[EnvironmentRow] = relationship()
    protocol: Mapped[ProtocolRow] = relationship()


class TrialRow(Base):
    __tablename__ = "sweep_trials"
    __table_args__ = (UniqueConstraint("base_config_id", "environment_id", "protocol_id", "setting_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_config_id: Mapped[int] = mapped_column(ForeignKey("sweep_base_configs.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("sweep_environments.id"))
    protocol_id: Mapped[int] = mapped_column(ForeignKey("sweep_protocols.id"))
    setting_key: Mapped[str] = mapped_column(Text)
    settings: Mapped[dict[str, dict[str, object]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    """``done`` or ``failed``."""
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    baseline_id: Mapped[int | None] = mapped_column(ForeignKey("sweep_baselines.id"), nullable=True)
    time: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Mean seconds per accelerated image over the paired runs."""
    time_spread: Mapped[float | None] = mapped_column(Float, nullable=True)
    paired_baseline_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Mean seconds per baseline image over the same pairs (interleaved with the accelerated runs)."""
    speedup: Mapped[float | None] = mapped_column(Float, nullable=True)
    """First measurement: median of the paired baseline/accelerated ratios."""
    ci_half_width: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Half the 95% confidence interval of ``speedup``, relative to it."""
    repeats: Mapped[int | None] = mapped_column(Integer, nullable=True)
    warmup_runs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    confirmed_speedup: Mapped[float | None] = mapped_column(Float, nullable=True)
    """A fresh paired re-measurement, made before the trial is published as an upper bound."""
    confirmed_ci_half_width: Mapped[float | None] = mapped_column(Float, nullable=True)
    confirmed_repeats: Mapped[int | None] = mapped_column(Integer, nullable=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    clip_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    score_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    image_deviation: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Mean |accelerated − baseline| pixel difference (0 to 1), same prompts and seeds, same paired run."""
    n_images: Mapped[int | None] = mapped_column(Integer, nullable=True)
    patched_modules: Mapped[int | None] = mapped_column(Integer, nullable=True)
    worker: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    base_config: Mapped[BaseConfigRow] = relationship()
    environment: Mapped[EnvironmentRow] = relationship()
    protocol: Mapped[ProtocolRow] = relationship()
    baseline: Mapped[BaselineRow | None] = relationship()


class SearchRow(Base):
    """How a strategy searched one (base config, environment, protocol) for a threshold, and how it decided."""

    __tablename__ = "sweep_searches"
    __table_args__ = (UniqueConstraint("base_config_id", "environment_id", "protocol_id", "strategy", "max_loss"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_config_id: Mapped[int] = mapped_column(ForeignKey("sweep_base_configs.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("sweep_environments.id"))
    protocol_id: Mapped[int] = mapped_column(ForeignKey("sweep_protocols.id"))
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
    """A unit of work in the shared queue: the baseline or one setting of a (base config, environment, protocol).

    Workers claim a pending task (or one whose lease expired) under a lease they renew while measuring; the
    result is written in the same transaction that marks the task done, guarded by the lease owner.
    """

    __tablename__ = "sweep_tasks"
    __table_args__ = (
        UniqueConstraint("base_config_id", "environment_id", "protocol_id", "setting_key"),
        Index("ix_sweep_tasks_claim", "environment_id", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_config_id: Mapped[int] = mapped_column(ForeignKey("sweep_base_configs.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("sweep_environments.id"))
    protocol_id: Mapped[int] = mapped_column(ForeignKey("sweep_protocols.id"))
    setting_key: Mapped[str] = mapped_column(Text)
    """``{}`` for the baseline."""
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
    """A task's target speed-up, stored with the upper bound it came from (a changed bound makes it stale)."""

    __tablename__ = "sweep_targets"
    __table_args__ = (UniqueConstraint("base_config_id", "environment_id", "protocol_id", "max_loss", "difficulty"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_config_id: Mapped[int] = mapped_column(ForeignKey("sweep_base_configs.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("sweep_environments.id"))
    protocol_id: Mapped[int] = mapped_column(ForeignKey("sweep_protocols.id"))
    max_loss: Mapped[float] = mapped_column(Float)
    difficulty: Mapped[str] = mapped_column(String(64))
    factor: Mapped[float | None] = mapped_column(Float, nullable=True)
    target: Mapped[float] = mapped_column(Float)
    upper_bound: Mapped[float | None] = mapped_column(Float, nullable=True)
    """The published upper bound the target was computed from."""
    trial_id: Mapped[int | None] = mapped_column(ForeignKey("sweep_trials.id"), nullable=True)
    """A measured setting that reaches the target (least score loss when chosen), if any."""
    origin: Mapped[str] = mapped_column(Text, default="sweep")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
