"""Alembic environment for sweep's schema. Its version table is ``sweep_alembic_version``, so Optuna's own
``alembic_version`` in the same database is left alone."""

from __future__ import annotations

from alembic import context

from storage.models import Base

VERSION_TABLE = "sweep_alembic_version"


def _include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # the database may also hold Optuna's tables: autogenerate considers sweep's only
    return type_ != "table" or bool(name and name.startswith("sweep_"))


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("sweep runs its migrations with a connection (storage.schema.upgrade)")
    context.configure(
        connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
        include_object=_include, render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
