"""The database core: engine, short transactions, identities (configurations, environments, protocols), scopes.

The only place that opens sessions. Inserts rely on the unique constraints: a key written by another process
first is read back instead of written twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from search_space.base_config import BaseConfig, SpeedConfig
from storage.engine import open_engine
from storage.errors import StorageError
from storage.models import (
    Base,
    BaseConfigRow,
    EnvironmentRow,
    QualityProtocolRow,
    SpeedConfigRow,
    TimingProtocolRow,
)


@dataclass(frozen=True)
class Scope:
    """Row ids of one base configuration measured in one environment under one quality and timing protocol.

    Its speed half is (speed config, environment, timing protocol); its quality half (base config, quality
    protocol).
    """

    base_config_id: int
    speed_config_id: int
    environment_id: int
    quality_protocol_id: int
    timing_protocol_id: int

    def speed_filter(self, model: type[Base]) -> tuple[object, ...]:
        return (model.speed_config_id == self.speed_config_id, model.environment_id == self.environment_id,  # type: ignore[attr-defined]
                model.timing_protocol_id == self.timing_protocol_id)  # type: ignore[attr-defined]

    def quality_filter(self, model: type[Base]) -> tuple[object, ...]:
        return (model.base_config_id == self.base_config_id,  # type: ignore[attr-defined]
                model.quality_protocol_id == self.quality_protocol_id)  # type: ignore[attr-defined]

    def task_filter(self, model: type[Base]) -> tuple[object, ...]:
        return (*self.quality_filter(model), model.environment_id == self.environment_id,  # type: ignore[attr-defined]
                model.timing_protocol_id == self.timing_protocol_id)  # type: ignore[attr-defined]


def base_from_row(row: BaseConfigRow) -> BaseConfig:
    return BaseConfig(
        row.pipeline, row.model, row.weights, row.scheduler, row.steps,  # type: ignore[arg-type]
        row.height, row.width, row.dtype, row.batch_size,
    )


def row_values(row: Base) -> dict[str, object]:
    """The column values set on an unsaved ORM row (unset columns take their defaults at insert)."""
    values = {c.key: getattr(row, c.key) for c in row.__table__.columns}  # type: ignore[attr-defined]
    return {k: v for k, v in values.items() if v is not None}


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = open_engine(url)
        self.dialect = self.engine.dialect.name
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._create_schema()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _create_schema(self) -> None:
        from storage.schema import ensure

        try:
            ensure(self.engine, self.url)
        except DBAPIError as exc:
            raise StorageError(f"cannot create sweep's tables in {self.url}: {exc.orig}") from None

    def insert_ignore(self, session: Session, rows: Iterable[Base]) -> list[bool]:
        """Insert each row unless its key is stored already (another process's result stands); True per insert."""
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        connection = session.connection()
        inserted = []
        for row in rows:
            table = type(row).__table__  # type: ignore[attr-defined]
            statement = dialect.insert(table).values(**row_values(row)).on_conflict_do_nothing().returning(table.c.id)
            inserted.append(connection.execute(statement).first() is not None)  # a row comes back only if it went in
        return inserted

    # -- identities -------------------------------------------------------------------------------------

    def _get_or_create(self, table: type[Base], key: str, **fields: object) -> int:
        with self.session() as s:
            found = s.scalar(select(table.id).where(table.key == key))  # type: ignore[attr-defined]
            if found is not None:
                return int(found)
        try:
            with self.session() as s:
                row = table(key=key, **fields)
                s.add(row)
                s.flush()
                return int(row.id)  # type: ignore[attr-defined]
        except IntegrityError:  # inserted by another worker in between
            with self.session() as s:
                return int(s.scalar(select(table.id).where(table.key == key)))  # type: ignore[attr-defined]

    def ensure_speed_config(self, speed: SpeedConfig) -> int:
        return self._get_or_create(
            SpeedConfigRow, speed.key, pipeline=speed.pipeline, scheduler=speed.scheduler, steps=speed.steps,
            height=speed.height, width=speed.width, dtype=speed.dtype, batch_size=speed.batch_size,
        )

    def ensure_base_config(self, base: BaseConfig) -> int:
        return self._get_or_create(
            BaseConfigRow, base.key, speed_config_id=self.ensure_speed_config(base.speed), pipeline=base.pipeline,
            model=base.model, weights=base.weights, scheduler=base.scheduler, steps=base.steps, height=base.height,
            width=base.width, dtype=base.dtype, batch_size=base.batch_size,
        )

    def ensure_environment(self, key: str, device: str, details: dict[str, str]) -> int:
        return self._get_or_create(EnvironmentRow, key, device=device, details=details)

    def ensure_quality_protocol(
        self, key: str, *, prompt_source: str, prompts: list[str], prompts_sha256: str, seed: int, scorer: str,
    ) -> int:
        return self._get_or_create(
            QualityProtocolRow, key, prompt_source=prompt_source, prompts=prompts, prompts_sha256=prompts_sha256,
            prompt_count=len(prompts), seed=seed, scorer=scorer,
        )

    def ensure_timing_protocol(self, key: str, *, images: int, policy: dict[str, float]) -> int:
        return self._get_or_create(TimingProtocolRow, key, images=images, policy=policy)

    def scope(self, base: BaseConfig, environment_id: int, quality_protocol_id: int, timing_protocol_id: int) -> Scope:
        base_id = self.ensure_base_config(base)
        with self.session() as s:
            speed_id = s.scalar(select(BaseConfigRow.speed_config_id).where(BaseConfigRow.id == base_id))
        return Scope(base_id, int(speed_id), environment_id, quality_protocol_id, timing_protocol_id)  # type: ignore[arg-type]

    def scope_of(self, base_config_id: int, environment_id: int, quality_protocol_id: int, timing_protocol_id: int) -> Scope:
        with self.session() as s:
            speed_id = s.scalar(select(BaseConfigRow.speed_config_id).where(BaseConfigRow.id == base_config_id))
        return Scope(base_config_id, int(speed_id), environment_id, quality_protocol_id, timing_protocol_id)  # type: ignore[arg-type]

    def base_config(self, base_config_id: int) -> BaseConfig:
        with self.session() as s:
            row = s.get(BaseConfigRow, base_config_id)
            assert row is not None
            return base_from_row(row)

    def quality_protocol_row(self, quality_protocol_id: int) -> dict[str, object]:
        with self.session() as s:
            row = s.get(QualityProtocolRow, quality_protocol_id)
            assert row is not None
            return {"key": row.key, "prompt_source": row.prompt_source, "prompts": list(row.prompts), "seed": row.seed,
                    "scorer": row.scorer}

    def timing_protocol_row(self, timing_protocol_id: int) -> dict[str, object]:
        with self.session() as s:
            row = s.get(TimingProtocolRow, timing_protocol_id)
            assert row is not None
            return {"key": row.key, "images": row.images, "policy": dict(row.policy)}

    def environment_id(self, key: str) -> int | None:
        """The stored environment of ``key``, or None (nothing is created)."""
        with self.session() as s:
            return s.scalar(select(EnvironmentRow.id).where(EnvironmentRow.key == key))

    def environment_devices(self) -> dict[int, str]:
        """Every stored environment's id → its device, in words."""
        with self.session() as s:
            return {i: d for i, d in s.execute(select(EnvironmentRow.id, EnvironmentRow.device)).all()}

    def environment_ids(self, match: str) -> list[int]:
        """Environments whose id equals ``match`` or whose device name contains it (case-insensitive)."""
        with self.session() as s:
            rows = s.execute(select(EnvironmentRow.id, EnvironmentRow.device)).all()
        return [i for i, device in rows if str(i) == match or match.lower() in device.lower()]
