"""Schema creation and upgrades through Alembic migrations, and the check every command makes of the schema.

An empty database is created at the newest revision. A database at an older revision is refused with the
command that upgrades it (``sweep db upgrade``), because other workers may still run the older code; one
at a revision this sweep does not know is refused too (upgrade sweep).

A damaged schema is refused, never worked around or upgraded over, with one line naming the damage: a version
table holding several revisions, or none while sweep's tables are there; at the newest revision, a table or a
column the models declare (storage.models) that the database lacks. Tables that are not sweep's models
(Optuna's, the ``sweep_archive_*`` tables kept by migration 0004) are not looked at.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import Inspector
from sqlalchemy.exc import DBAPIError, NoSuchTableError, SQLAlchemyError

from storage.engine import shown
from storage.errors import StorageError

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "sweep_alembic_version"
_LOCK_KEY = 7_031_911  # PostgreSQL advisory lock: one process migrates at a time
_RESTORE = "restore it from a backup or use another database"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    revision = _script().get_current_head()
    assert revision is not None
    return revision


@functools.cache
def known_revisions() -> frozenset[str]:
    return frozenset(rev.revision for rev in _script().walk_revisions())


def _versions(connection: Connection, inspector: Inspector, url: str) -> list[str] | None:
    """The rows of the version table (None: there is none)."""
    if VERSION_TABLE not in inspector.get_table_names():
        return None
    try:
        return [str(row[0]) for row in connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))]
    except DBAPIError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise StorageError(f"{shown(url)}: its version table {VERSION_TABLE} cannot be read ({detail}); {_RESTORE}") from None


def missing(inspector: Inspector) -> list[str]:
    """The tables and columns of sweep's models the database lacks, each named ("table sweep_tasks is missing",
    "column sweep_tasks.kind is missing"): one reflection pass over the declared tables, cheap enough for every
    command."""
    from storage.models import Base

    declared = Base.metadata.tables
    live = {name: {c["name"] for c in columns}
            for (_schema, name), columns in inspector.get_multi_columns(filter_names=list(declared)).items()}
    found: list[str] = []
    for name, table in declared.items():
        if name not in live:
            found.append(f"table {name} is missing")
        else:
            found.extend(f"column {name}.{c.name} is missing" for c in table.columns if c.name not in live[name])
    return found


def differences(connection: Connection) -> list[str]:
    """Everything of sweep's models the database lacks or holds otherwise, each named: tables, columns, their
    types and nullability, indexes, unique and foreign-key constraints (Alembic's compare_metadata over sweep's
    declared tables; what the database holds besides them is not judged). Slower than ``missing``: `sweep db
    check` runs it."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.models import Base

    declared = set(Base.metadata.tables)

    def include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
        return type_ != "table" or name in declared

    context = MigrationContext.configure(connection, opts={"include_object": include, "compare_type": True})
    found: list[str] = []
    for diff in compare_metadata(context, Base.metadata):
        for op in diff if isinstance(diff, list) else [diff]:
            described = _described(op)
            if described:
                found.append(described)
    return sorted(found, key=lambda d: (not d.startswith("table "), not d.startswith("column ")))  # stable


def _columns(constraint: object) -> str:
    return ", ".join(c.name for c in constraint.columns)  # type: ignore[attr-defined]


def _described(op: tuple) -> str | None:  # type: ignore[type-arg]
    """One of compare_metadata's differences in words; None for what the database holds besides the models."""
    kind = op[0]
    if kind == "add_table":
        return f"table {op[1].name} is missing"
    if kind == "add_column":
        return f"column {op[2]}.{op[3].name} is missing"
    if kind == "add_index":
        return f"index {op[1].name} on {op[1].table.name} ({_columns(op[1])}) is missing"
    if kind == "add_constraint":
        return f"unique constraint on {op[1].table.name} ({_columns(op[1])}) is missing"
    if kind == "add_fk":
        fk = op[1]
        return f"foreign key {fk.table.name} ({_columns(fk)}) → {fk.referred_table.name} is missing"
    if kind == "modify_type":
        return f"column {op[2]}.{op[3]} is {op[5]} where sweep declares {op[6]}"
    if kind == "modify_nullable":
        return f"column {op[2]}.{op[3]} is {'nullable' if op[5] else 'NOT NULL'} where sweep declares it " \
               f"{'nullable' if op[6] else 'NOT NULL'}"
    return None


def _damaged(url: str, found: list[str], version: str) -> StorageError:
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    return StorageError(f"{shown(url)} is damaged: {'; '.join(found[:3])}{more}, although it is stamped {version}; "
                        f"sweep neither works around nor upgrades over it: {_RESTORE}")


def _safe(value: str) -> str:
    """A value read from the database as one printable line."""
    return value if value.isprintable() else repr(value)


def _listed(items: list[str], most: int = 3) -> str:
    more = f" and {len(items) - most} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def verdict(connection: Connection, url: str) -> str | None:
    """The database's schema revision when its schema is sound (None: an empty database, no sweep schema yet);
    StorageError naming the damage otherwise. At the newest revision the live tables and columns are compared
    with the models; at an older one only the version table is read (its migrations check the rest)."""
    inspector = inspect(connection)
    versions = _versions(connection, inspector, url)
    if not versions:
        tables = sorted((t for t in inspector.get_table_names() if t.startswith("sweep_") and t != VERSION_TABLE),
                        key=lambda t: (t.startswith("sweep_archive_"), t))  # the models' tables first
        if tables:
            lacks = "it has no version table" if versions is None else f"its version table {VERSION_TABLE} is empty"
            raise StorageError(
                f"{shown(url)} holds sweep tables ({', '.join(_safe(t) for t in tables[:3])}...) but no sweep schema revision ({lacks}): "
                f"it was not created by a released sweep, or its version table was lost; {_RESTORE}"
            )
        return None
    if len(versions) > 1:
        raise StorageError(f"{shown(url)}: its version table {VERSION_TABLE} holds {len(versions)} revisions "
                           f"({_listed([_safe(v) for v in sorted(versions)])}) where a sweep database has one; {_RESTORE}")
    version, newest = versions[0], head()
    if version not in known_revisions():
        raise StorageError(f"{shown(url)} has sweep schema revision {version!r}, which this sweep does not know (its "
                           f"newest is {newest}): upgrade sweep if a newer one wrote it; otherwise {_RESTORE}")
    if version == newest:
        lacking = missing(inspector)
        if lacking:
            raise _damaged(url, lacking, version)
    return version


def current(engine: Engine, url: str | None = None) -> str | None:
    """The database's schema revision (None: no sweep schema yet); StorageError when the schema is damaged."""
    with engine.connect() as connection:
        return verdict(connection, url or engine.url.render_as_string(hide_password=False))


def check(engine: Engine, url: str) -> str | None:
    """``current``, and at the newest revision every difference from the models (``differences``): the revision
    of a sound schema (None: no sweep schema yet), a StorageError naming the damage otherwise. Changes nothing."""
    with engine.connect() as connection:
        version = verdict(connection, url)
        if version == head():
            found = differences(connection)
            if found:
                raise _damaged(url, found, version)
        return version


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


def upgrade(engine: Engine, revision: str = "head", url: str | None = None) -> tuple[str | None, str | None]:
    """Migrate to ``revision`` in one transaction: (revision before, revision after). A damaged schema is refused
    before; one that a migration cannot act on, or that does not match the models after, is left as it was."""
    url = url or engine.url.render_as_string(hide_password=False)
    if revision in ("head", head()) and current(engine, url) == head():
        return head(), head()  # nothing to do, nothing written (a read-only database at head stays fine)
    with _locked(engine) as connection:
        before = verdict(connection, url)
        try:
            _upgrade(connection, revision)
        except (SQLAlchemyError, CommandError) as exc:  # e.g. a table or a column the migration alters is gone
            orig = getattr(exc, "orig", None) or exc
            detail = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
            if isinstance(exc, NoSuchTableError):
                detail = f"no table {exc}"
            if before is None:
                raise StorageError(f"{shown(url)}: creating sweep's schema failed ({detail}); nothing was changed") from None
            raise StorageError(f"{shown(url)}: migrating from {before} failed ({detail}), so the schema is not what "
                               f"revision {before} had; nothing was changed: {_RESTORE}") from None
        after = _versions(connection, inspect(connection), url)
        lacking = missing(inspect(connection)) if after == [head()] else []
        if lacking:
            raise StorageError(f"{shown(url)} is damaged: {'; '.join(lacking[:3])} at revision {before}, so the upgrade "
                               f"was undone and nothing was changed: {_RESTORE}")
        return before, after[0] if after else None


def ensure(engine: Engine, url: str) -> None:
    """Create an empty database's schema; refuse one at another revision with what to do, and a damaged one.

    Safe when several processes start on a new database at once: the check is repeated under the migration
    lock, so one creates the schema and the others find it created.
    """
    newest = head()
    if current(engine, url) == newest:
        return  # the common case, without taking the lock
    with _locked(engine) as connection:
        version = verdict(connection, url)
        if version is None:
            _upgrade(connection, "head")
            return
        if version == newest:
            return
        raise StorageError(
            f"{shown(url)} has sweep schema revision {version}; this sweep needs {newest}. "
            f"Stop its workers, then run: sweep db upgrade --db {shown(url)}"
        )
