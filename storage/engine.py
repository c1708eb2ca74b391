"""Database URLs → SQLAlchemy engines, with SQLite tuned for concurrent writers and clear connection errors.

``parse_url`` is the one reading of a database URL every command makes (through ``open_engine``): a malformed,
unsupported or unsafe URL is refused there in one line (StorageError), never deep inside a driver. An engine
reports a write to a read-only database (a read-only SQLite file or folder, a read-only PostgreSQL transaction)
as one line too, wherever the write happens.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from storage.errors import StorageError

DEFAULT_URL = "sqlite:///sweep.db"
SQLITE_BUSY_TIMEOUT_S = 60
DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}
"""The one driver sweep opens each database with; ``postgresql://`` and ``postgresql+psycopg2://`` mean psycopg."""
_ALIASES = {("sqlite", ""): "pysqlite", ("postgresql", ""): "psycopg", ("postgresql", "psycopg2"): "psycopg"}
_EXAMPLE = {"sqlite": "sqlite:///sweep.db", "postgresql": "postgresql://user@host:5432/db"}
EXAMPLES = "sqlite:///sweep.db, sqlite:////absolute/path.db or postgresql://user@host:5432/db"

# SQLAlchemy's own reading of a URL (sqlalchemy/engine/url.py), to see the port as it is written: make_url
# reads it with int(), which takes "-1", " 5", "5_0" or "٣" as numbers and fails with a bare ValueError on "abc"
_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
        (?:(?:\[(?P<ipv6host>[^/\?]+)\]|(?P<ipv4host>[^/:\?]+))?(?::(?P<port>[^/\?]*))?)?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.VERBOSE,
)


def shown(url: str | URL) -> str:
    """A URL as messages show it: its password hidden."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # unreadable to SQLAlchemy: its password (if any) hidden as written
        written = _URL.match(str(url))
        if written is None or written.group("password") is None:
            return str(url)
        return f"{url[:written.start('password')]}***{url[written.end('password'):]}"
    if parsed.password is None:
        return str(url)
    return parsed.render_as_string(hide_password=True)


def parse_url(url: str) -> URL:
    """The database URL ``url`` read once, for every command: its backend's one driver set, its port a number
    in 1..65535, no control characters, an SQLite file's folder existing. StorageError says what is wrong."""
    if not url.strip():
        raise StorageError(f"no database URL given (--db or SWEEP_DB; e.g. {EXAMPLES})")
    if not url.isprintable():
        raise StorageError(f"the database URL {url!r} holds control characters (a line break, a tab, a NUL...)")
    written = _URL.match(url)
    port = written.group("port") if written else None
    if port is not None and not (re.fullmatch(r"[0-9]{1,5}", port) and 1 <= int(port) <= 65535):
        raise StorageError(f"the port {port!r} in {shown(url)} is not a port number (1 to 65535)")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise StorageError(f"{shown(url)!r} is not a database URL (expected e.g. {EXAMPLES})") from None
    parts = [parsed.username, parsed.password, parsed.host, parsed.database, *parsed.query.keys(),
             *(v for vs in parsed.query.values() for v in ((vs,) if isinstance(vs, str) else vs))]
    if not all(p.isprintable() for p in parts if p is not None):  # percent-encoded: %00 would cut libpq's conninfo
        raise StorageError(f"{shown(url)} holds an encoded control character (%00, %0A...)")
    backend, _, driver = parsed.drivername.partition("+")  # get_driver_name() would load the dialect
    if backend not in DRIVERS:
        raise StorageError(f"unsupported database {backend!r} in {shown(url)}; valid: sqlite, postgresql")
    driver = _ALIASES.get((backend, driver), driver)
    if driver != DRIVERS[backend]:
        raise StorageError(f"cannot use {shown(url)}: sweep opens {backend} through {DRIVERS[backend]} only, and "
                           f"driver {driver!r} {_driver_state(backend, driver)}: write it as e.g. {_EXAMPLE[backend]}")
    parsed = parsed.set(drivername=f"{backend}+{driver}")
    if backend == "sqlite":
        _check_sqlite(url, parsed)
    return parsed


def _driver_state(backend: str, driver: str) -> str:
    try:
        dialect = URL.create(f"{backend}+{driver}").get_dialect()
        dialect.import_dbapi()
    except NoSuchModuleError:
        return "is not one SQLAlchemy knows"
    except ImportError:
        return "is not installed"
    except Exception:  # noqa: BLE001 (a third-party dialect failing to load says the same)
        return "cannot be loaded"
    return "is not supported"


def _sqlite_path(parsed: URL) -> Path | None:
    """The file an SQLite URL names (None: in memory, or an URI with an authority SQLite reads itself)."""
    database = parsed.database or ""
    if not database or database == ":memory:":
        return None
    if database.startswith("file:"):  # an SQLite URI (?uri=true): its path
        database = database[len("file:"):].split("?", 1)[0]
        if database.startswith("//"):
            return None
    return Path(database).expanduser()


def _check_sqlite(url: str, parsed: URL) -> None:
    if parsed.host or parsed.port or parsed.username or parsed.password:
        raise StorageError(f"{shown(url)}: an SQLite URL names a file, without host, port or user "
                           "(sqlite:///relative.db or sqlite:////absolute/path.db)")
    path = _sqlite_path(parsed)
    if path is None:
        return
    if path.is_dir():
        raise StorageError(f"cannot open {shown(url)}: {path} is a folder, not a database file")
    folder = path.resolve().parent
    if not folder.is_dir():
        raise StorageError(f"cannot open {shown(url)}: folder {folder} does not exist")


def _folder_read_only(path: Path | None) -> bool:
    return path is not None and path.resolve().parent.is_dir() and not os.access(path.resolve().parent, os.W_OK)


def _is_read_only(error: BaseException | None, path: Path | None = None) -> bool:
    """An SQLite SQLITE_READONLY* error (or SQLITE_CANTOPEN where the database's folder is not writable: SQLite's
    answer to root, whom file modes do not stop), or PostgreSQL's read_only_sql_transaction (SQLSTATE 25006)."""
    name = getattr(error, "sqlite_errorname", None)
    if isinstance(name, str):
        return name.startswith("SQLITE_READONLY") or name == "SQLITE_CANTOPEN" and _folder_read_only(path)
    return getattr(error, "sqlstate", None) == "25006"


def read_only_error(url: str, error: BaseException | None) -> StorageError:
    """The one line for a write refused because the database is read-only."""
    detail = str(error).strip().splitlines()[0] if error is not None and str(error).strip() else "read-only"
    where = "it"
    parsed = make_url(url)
    path = _sqlite_path(parsed) if parsed.get_backend_name() == "sqlite" else None
    if path is not None:
        path = path.resolve()
        if getattr(error, "sqlite_errorname", "") == "SQLITE_READONLY_DIRECTORY" or _folder_read_only(path):
            where = f"its folder {path.parent} (SQLite writes its -wal and -shm files next to the database)"
        else:
            where = f"the file {path}"
    return StorageError(f"{shown(url)} is read-only ({detail}): this command writes to the database; make {where} "
                        "writable, or use another database")


def _sqlite_pragmas(path: Path | None) -> Callable[[object, object], None]:
    def pragmas(dbapi_connection: object, _record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:  # a read-only database keeps its journal: reading works, writes say so
            if not _is_read_only(exc, path):
                raise
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return pragmas


def open_engine(url: str) -> Engine:
    """An engine for ``url`` that has answered a query; StorageError says what is wrong otherwise."""
    parsed = parse_url(url)
    path = _sqlite_path(parsed) if parsed.get_backend_name() == "sqlite" else None
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
            event.listen(engine, "connect", _sqlite_pragmas(path))
        else:
            engine = create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    except (ArgumentError, ValueError, TypeError, ImportError) as exc:  # e.g. ?timeout=abc, ?uri=maybe
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot use {shown(url)}: {detail}") from None

    def read_only(context: ExceptionContext) -> None:
        if _is_read_only(context.original_exception, path):
            raise read_only_error(url, context.original_exception)

    event.listen(engine, "handle_error", read_only)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except StorageError:
        engine.dispose()
        raise
    except (DBAPIError, ValueError, TypeError) as exc:
        engine.dispose()
        orig = getattr(exc, "orig", None) or exc
        detail = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        hint = " (the file exists but is not an SQLite database)" if "not a database" in detail else ""
        raise StorageError(f"cannot open {shown(url)}: {detail}{hint}") from None
    return engine
