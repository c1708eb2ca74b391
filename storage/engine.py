"""Database URLs → SQLAlchemy engines, with SQLite tuned for concurrent writers and clear connection errors."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from storage.errors import StorageError

DEFAULT_URL = "sqlite:///sweep.db"
SQLITE_BUSY_TIMEOUT_S = 60


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def open_engine(url: str) -> Engine:
    """An engine for ``url`` that has answered a query; StorageError says what is wrong otherwise."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(f"{url!r} is not a database URL (expected e.g. sqlite:///sweep.db or postgresql://host/db)") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            folder = Path(database).expanduser().resolve().parent
            if not folder.is_dir():
                raise StorageError(f"cannot open {url}: folder {folder} does not exist")
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_pragmas)
    elif backend == "postgresql":
        if parsed.get_driver_name() in ("", "psycopg2"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            engine = create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10})
        except NoSuchModuleError as exc:
            raise StorageError(f"cannot use {url}: {exc}") from None
    else:
        raise StorageError(f"unsupported database {backend!r} in {url}; valid: sqlite, postgresql")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        hint = " (the file exists but is not an SQLite database)" if "not a database" in detail else ""
        raise StorageError(f"cannot open {parsed.render_as_string(hide_password=True)}: {detail}{hint}") from None
    return engine
