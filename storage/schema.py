"""Schema creation and upgrades through Alembic migrations, and the version check every command makes.

An empty database is created at the newest revision. A database at an older revision is refused with the
command that upgrades it (``sweep db upgrade``), because other workers may still run the older code; one
at a revision this sweep does not know is refused too (upgrade sweep).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from storage.errors import StorageError

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "sweep_alembic_version"
_LOCK_KEY = 7_031_911  # PostgreSQL advisory lock: one process migrates at a time


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head() -> str:
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return _revision(connection)


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """One transaction that holds the migration lock: SQLite's write lock taken up front (pysqlite would
    otherwise run each DDL statement in its own implicit transaction), PostgreSQL's advisory lock. Whatever is
    read inside it is what the migration will act on; a failure or a kill leaves the database as it was."""
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})"))
        try:
            yield connection
        except BaseException:
            connection.rollback()
            raise
        connection.commit()


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    config = _config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    with _locked(engine) as connection:
        _upgrade(connection, revision)


def ensure(engine: Engine, url: str) -> None:
    """Create an empty database's schema; refuse one at another revision with what to do.

    Safe when several processes start on a new database at once: the check is repeated under the migration
    lock, so one creates the schema and the others find it created.
    """
    if current(engine) == head():
        return  # the common case, without taking the lock
    with _locked(engine) as connection:
        version = _revision(connection)
        if version is None:
            tables = [t for t in inspect(connection).get_table_names() if t.startswith("sweep_")]
            if tables:
                raise StorageError(
                    f"{url} holds sweep tables ({', '.join(sorted(tables)[:3])}...) but no sweep schema revision: it was "
                    "not created by a released sweep; use another database"
                )
            _upgrade(connection, "head")
            return
        newest = head()
        if version == newest:
            return
        known = {rev.revision for rev in ScriptDirectory.from_config(_config()).walk_revisions()}
        if version not in known:
            raise StorageError(f"{url} has sweep schema revision {version}, newer than this sweep knows ({newest}): upgrade sweep")
        raise StorageError(
            f"{url} has sweep schema revision {version}; this sweep needs {newest}. "
            f"Stop its workers, then run: sweep db upgrade --db {url}"
        )
