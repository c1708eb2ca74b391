"""Schema creation and upgrades through Alembic migrations, and the version check every command makes.

An empty database is created at the newest revision. A database at an older revision is refused with the
command that upgrades it (``sweep db upgrade``), because other workers may still run the older code; one
at a revision this sweep does not know is refused too (upgrade sweep).
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

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
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    config = _config()
    with engine.connect() as connection:
        # One transaction for the whole upgrade, so a failure or a kill leaves the database as it was, and one
        # migrator at a time: SQLite takes its write lock up front (pysqlite would otherwise run each DDL
        # statement in its own implicit transaction), PostgreSQL an advisory lock.
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})"))
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, revision)
        except BaseException:
            connection.rollback()
            raise
        connection.commit()


def ensure(engine: Engine, url: str) -> None:
    """Create an empty database's schema; refuse one at another revision with what to do."""
    version = current(engine)
    if version is None:
        tables = [t for t in inspect(engine).get_table_names() if t.startswith("sweep_")]
        if tables:
            raise StorageError(
                f"{url} holds sweep tables from before migrations existed (pre-release schema): use a new database"
            )
        upgrade(engine)
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
