"""Hostile storage (issue 20): database URLs that are malformed, name a driver sweep does not use, or point at a
read-only database; and schemas that are damaged (a table or a column dropped, the version table stamped with an
unknown revision, holding two rows, emptied or dropped). Hypothesis generates each kind; every command answers
with one line starting with "error:", exit code 2, no traceback, and leaves the database as it was."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Column,
    ForeignKeyConstraint,
    MetaData,
    Table,
    UniqueConstraint,
    create_engine,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from storage import Repository
from storage.models import Base
from storage.schema import VERSION_TABLE, head, known_revisions, upgrade
from sweep import app as app_layer
from sweep.fronts.cli import app
from tests.conftest import POSTGRES_ADMIN_URL, new_postgres_database

runner = CliRunner()
FEW = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEWER = settings(FEW, max_examples=6)  # where the kinds are few, or each example costs a migration
READING = (["status"], ["db", "current"], ["db", "check"], ["query"])
COMMANDS = (*READING, ["db", "upgrade"])
LEGACY = '{"(\'SD1.5\', \'DDIMScheduler\', 50, \'upbound_speedup\', 0.02)": ' \
         '{"cache_interval": 10, "time": 0.16, "speedup": 12.0, "score_loss": 0.019}}'
TABLES = sorted(Base.metadata.tables)
COLUMNS = sorted((t.name, c.name) for t in Base.metadata.tables.values() for c in t.columns if not c.primary_key)
UNIQUE_TABLES = sorted(t.name for t in Base.metadata.tables.values()
                       if any(isinstance(c, UniqueConstraint) for c in t.constraints))


def invoke(args: list[str], url: str):  # type: ignore[no-untyped-def]
    app_layer.repository.cache_clear()  # each invocation opens the database afresh, as a new process would
    return runner.invoke(app, [*args, "--db", url])


def one_line_error(result, *messages: str) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # a user's problem, not a traceback
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for message in messages:
        assert message in lines[0], lines[0]
    return lines[0]


# -- databases ------------------------------------------------------------------------------------------------


def snapshot(url: str) -> dict[str, object]:
    """Everything a refusal must leave alone: the tables, their columns, indexes and row counts, the version rows."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            inspector = inspect(connection)
            tables = sorted(inspector.get_table_names())
            columns = inspector.get_multi_columns(filter_names=tables)
            indexes = inspector.get_multi_indexes(filter_names=tables)
            uniques = inspector.get_multi_unique_constraints(filter_names=tables)
            found: dict[str, object] = {}
            for name in tables:
                key = (None, name)
                found[name] = (sorted(c["name"] for c in columns.get(key, [])),
                               sorted(str(i["name"]) for i in indexes.get(key, [])), len(uniques.get(key, [])),
                               connection.scalar(select(func.count()).select_from(text(f'"{name}"'))))
            if VERSION_TABLE in tables:
                found["versions"] = sorted(connection.scalars(text(f"SELECT version_num FROM {VERSION_TABLE}")))
            return found
    finally:
        engine.dispose()


def _sqlite_file(url: str) -> Path:
    return Path(make_url(url).database or "")


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Sweep databases at the newest revision and at 0004, built once: each example copies one."""
    folder = tmp_path_factory.mktemp("templates")
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    names = {rev: f"sweep_template_{rev}_{uuid.uuid4().hex[:8]}" for rev in ("head", "0004")}
    found: dict[str, str] = {}
    with admin.connect() as connection:
        for rev, name in names.items():
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    for rev, name in names.items():
        for kind, url in (("sqlite", f"sqlite:///{folder / f'{rev}.db'}"),
                          ("postgresql", make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(False))):
            if rev == "head":
                Repository(url).close()
            else:
                from storage.engine import open_engine

                engine = open_engine(url)
                upgrade(engine, rev)
                engine.dispose()
            found[f"{kind}:{rev}"] = url
    yield found
    with admin.connect() as connection:
        for name in names.values():
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextlib.contextmanager
def fresh(templates: dict[str, str], kind: str, rev: str = "head") -> Iterator[str]:
    """A new database copied from a template (a file copy; PostgreSQL's CREATE DATABASE ... TEMPLATE)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / "sweep.db"
            if rev == "empty":
                target.write_bytes(b"")
            else:
                shutil.copy(_sqlite_file(templates[f"{kind}:{rev}"]), target)
            yield f"sqlite:///{target}"
        return
    with new_postgres_database(None if rev == "empty" else make_url(templates[f"{kind}:{rev}"]).database) as url:
        yield url


# -- damage -----------------------------------------------------------------------------------------------------


def _recreate_without(connection, name: str, column: str | None = None, uniques: bool = True) -> None:  # type: ignore[no-untyped-def]
    """SQLite cannot drop a column that an index, a unique or a foreign key names, nor a constraint: the table
    is copied without it (and without what names it; ``uniques=False``: without its unique constraints)."""
    live = Table(name, MetaData(), autoload_with=connection)

    def keeps(constraint) -> bool:  # type: ignore[no-untyped-def]
        return column not in [c.name for c in constraint.columns]

    kept = [c for c in live.columns if c.name != column]
    copy = Table(
        f"{name}_damaged", live.metadata,
        *[Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in kept],
        *[UniqueConstraint(*[c.name for c in u.columns]) for u in live.constraints
          if uniques and isinstance(u, UniqueConstraint) and keeps(u)],
        *[ForeignKeyConstraint([c.name for c in fk.columns], [e.target_fullname for e in fk.elements])
          for fk in live.foreign_key_constraints if keeps(fk)],
    )
    copy.create(connection)
    names = ", ".join(f'"{c.name}"' for c in kept)
    connection.execute(text(f'INSERT INTO "{copy.name}" ({names}) SELECT {names} FROM "{name}"'))
    indexes = [(i.name, [c.name for c in i.columns]) for i in live.indexes if keeps(i)]
    connection.execute(text(f'DROP TABLE "{name}"'))
    connection.execute(text(f'ALTER TABLE "{copy.name}" RENAME TO "{name}"'))
    for index, columns in indexes:
        connection.execute(text(f'CREATE INDEX "{index}" ON "{name}" ({", ".join(columns)})'))


def _named(inspector, table: str) -> set[str]:  # type: ignore[no-untyped-def]
    """The columns an index, a unique constraint or a foreign key of ``table`` names (SQLite will not drop them)."""
    found = [i["column_names"] for i in inspector.get_indexes(table)]
    found += [u["column_names"] for u in inspector.get_unique_constraints(table)]
    found += [f["constrained_columns"] for f in inspector.get_foreign_keys(table)]
    return {c for columns in found for c in columns}


def damage(url: str, how: tuple[str, ...]) -> None:
    """Break the schema behind sweep's back, with a plain engine."""
    engine = create_engine(url)
    postgres = engine.dialect.name == "postgresql"
    cascade = " CASCADE" if postgres else ""
    try:
        with engine.begin() as connection:
            kind, *args = how
            if kind == "drop_table":
                connection.execute(text(f'DROP TABLE "{args[0]}"{cascade}'))
            elif kind == "drop_column":
                if postgres:
                    connection.execute(text(f'ALTER TABLE "{args[0]}" DROP COLUMN "{args[1]}" CASCADE'))
                elif args[1] in _named(inspect(connection), args[0]):
                    _recreate_without(connection, args[0], args[1])
                else:
                    connection.execute(text(f'ALTER TABLE "{args[0]}" DROP COLUMN "{args[1]}"'))
            elif kind == "drop_unique":
                if postgres:
                    for unique in inspect(connection).get_unique_constraints(args[0]):
                        connection.execute(text(f'ALTER TABLE "{args[0]}" DROP CONSTRAINT "{unique["name"]}"'))
                else:
                    _recreate_without(connection, args[0], uniques=False)
            elif kind == "drop_index":
                connection.execute(text("DROP INDEX ix_sweep_tasks_claim"))
            elif kind == "stamp":
                connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = :v"), {"v": args[0]})
            elif kind == "add_version":
                connection.execute(text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:v)"), {"v": args[0]})
            elif kind == "empty_versions":
                connection.execute(text(f"DELETE FROM {VERSION_TABLE}"))
            elif kind == "drop_versions":
                connection.execute(text(f"DROP TABLE {VERSION_TABLE}"))
            else:
                raise AssertionError(kind)
    finally:
        engine.dispose()


revision_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=32)
unknown_revision = revision_text.filter(lambda r: r not in known_revisions())
SCHEMA_DAMAGE = st.one_of(
    st.sampled_from(TABLES).map(lambda t: (("drop_table", t), f"table {t} is missing")),
    st.sampled_from(COLUMNS).map(lambda tc: (("drop_column", *tc), f"column {tc[0]}.{tc[1]} is missing")),
    unknown_revision.map(lambda r: (("stamp", r), f"has sweep schema revision {r!r}, which this sweep does not know")),
    unknown_revision.filter(lambda r: r != head()).map(lambda r: (("add_version", r), "holds 2 revisions")),
    st.sampled_from(sorted(known_revisions() - {head()})).map(lambda r: (("add_version", r), "holds 2 revisions")),
    st.just((("empty_versions",), f"its version table {VERSION_TABLE} is empty")),
    st.just((("drop_versions",), "it has no version table")),
)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@FEW
@given(case=SCHEMA_DAMAGE, commands=st.permutations(COMMANDS))
def test_every_command_names_a_damaged_schema_and_changes_nothing(
    templates: dict[str, str], kind: str, case: tuple[tuple[str, ...], str], commands: list[list[str]],
) -> None:
    how, message = case
    with fresh(templates, kind) as url:
        damage(url, how)
        before = snapshot(url)
        for args in commands:
            one_line_error(invoke(args, url), message)
        assert snapshot(url) == before


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@FEWER
@given(case=st.one_of(
    st.just((("drop_index",), "index ix_sweep_tasks_claim on sweep_tasks")),
    st.sampled_from(UNIQUE_TABLES).map(lambda t: (("drop_unique", t), f"unique constraint on {t} (")),
))
def test_db_check_names_what_the_check_on_every_command_leaves_out(
    templates: dict[str, str], kind: str, case: tuple[tuple[str, ...], str],
) -> None:
    """Every command checks tables and columns (cheap); `sweep db check` compares indexes and constraints too."""
    how, message = case
    with fresh(templates, kind) as url:
        damage(url, how)
        before = snapshot(url)
        one_line_error(invoke(["db", "check"], url), message, "is damaged")
        assert invoke(["status"], url).exit_code == 0
        assert snapshot(url) == before


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@FEWER
@given(data=st.data())
def test_an_older_damaged_schema_is_never_upgraded_over(templates: dict[str, str], kind: str, data: st.DataObject) -> None:
    """At 0004 the damage cannot be compared with the models: the migration fails on it, or the upgraded schema
    does not match them, and the upgrade is undone either way."""
    with fresh(templates, kind, "0004") as url:
        engine = create_engine(url)
        with engine.connect() as connection:
            inspector = inspect(connection)
            live = {t: [c["name"] for c in inspector.get_columns(t)] for t in inspector.get_table_names() if t in TABLES}
        engine.dispose()
        table = data.draw(st.sampled_from(sorted(live)))
        victim = data.draw(st.one_of(st.just(("drop_table", table)), st.sampled_from(
            [("drop_column", table, c) for c in live[table] if c != "id"])))
        damage(url, victim)
        before = snapshot(url)
        one_line_error(invoke(["db", "upgrade"], url), "nothing was changed")
        assert snapshot(url) == before


def test_db_check_reports_a_sound_schema_and_changes_nothing(templates: dict[str, str], tmp_path: Path) -> None:
    for kind in ("sqlite", "postgresql"):
        with fresh(templates, kind) as url:
            result = invoke(["db", "check"], url)
            assert (result.exit_code, result.output.strip()) == (0, f"schema ok at {head()}")
        with fresh(templates, kind, "0004") as url:
            result = invoke(["db", "check"], url)
            assert result.exit_code == 0 and result.output.startswith("schema at 0004, older than this sweep's")
            assert invoke(["db", "upgrade"], url).exit_code == 0
            assert invoke(["db", "check"], url).output.strip() == f"schema ok at {head()}"
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert invoke(["db", "check"], url).output.startswith("no sweep schema yet")
    assert snapshot(url) == {}
    # the previous release's database, upgraded, matches the models in every index and constraint
    shutil.copy(Path(__file__).parent / "data" / "release-0.1.0.sqlite", tmp_path / "release.db")
    url = f"sqlite:///{tmp_path / 'release.db'}"
    assert invoke(["db", "upgrade"], url).exit_code == 0
    assert invoke(["db", "check"], url).output.strip() == f"schema ok at {head()}"


# -- URLs -------------------------------------------------------------------------------------------------------

PORT_TEXT = st.text(st.characters(categories=("L", "N", "P", "S"), include_characters=" ", exclude_characters="/?@[]#%"),
                    max_size=8)
DRIVERS = {"sqlite": ["pysqlcipher", "aiosqlite", "pysqlite_async"], "postgresql": ["asyncpg", "pg8000", "psycopg2cffi",
                                                                                  "psycopg_async", "pygresql"]}
SUPPORTED = {"sqlite": {"pysqlite"}, "postgresql": {"psycopg", "psycopg2"}}


def _with_port(backend: str, port: str) -> str:
    return f"{backend}://u@localhost:{port}/db" if backend == "postgresql" else f"sqlite://:{port}/x.db"


@st.composite
def bad_urls(draw: st.DrawFn) -> tuple[str, str]:
    """(a URL, what its one line must say)."""
    backend = draw(st.sampled_from(["sqlite", "postgresql"]))
    kind = draw(st.sampled_from(["port", "range", "driver", "dialect", "control", "encoded", "blank", "folder", "host"]))
    if kind == "port":
        port = draw(PORT_TEXT.filter(lambda p: not re.fullmatch(r"[0-9]{1,5}", p)))
        return _with_port(backend, port), "is not a port number (1 to 65535)"
    if kind == "range":
        port = draw(st.one_of(st.integers(max_value=0), st.integers(min_value=65536)))
        return _with_port(backend, str(port)), "is not a port number (1 to 65535)"
    if kind == "driver":
        driver = draw(st.one_of(st.sampled_from(DRIVERS[backend]), st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True))
                      .filter(lambda d: d not in SUPPORTED[backend]))
        rest = "/x.db" if backend == "sqlite" else "u@localhost/db"
        return f"{backend}+{driver}://{rest}", f"sweep opens {backend} through"
    if kind == "dialect":
        name = draw(st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True).filter(lambda n: n not in SUPPORTED))
        driver = draw(st.sampled_from(["", "+psycopg", "+pysqlite", "+x"]))
        return f"{name}{driver}://u@localhost/db", f"unsupported database {name!r}"
    if kind == "control":
        url = "sqlite:///x.db" if backend == "sqlite" else "postgresql://u@localhost/db"
        at = draw(st.integers(0, len(url)))
        char = draw(st.characters(categories=("Cc", "Zl", "Zp")))
        return url[:at] + char + url[at:], "control characters"
    if kind == "encoded":
        code = draw(st.sampled_from(["%00", "%0A", "%0D", "%09", "%1B"]))
        url = f"sqlite:///x{code}.db" if backend == "sqlite" else f"postgresql://u@localhost/d{code}b"
        return url, "holds an encoded control character"
    if kind == "blank":
        return draw(st.text(" \t\n\r", max_size=4)), "no database URL given"
    if kind == "folder":
        return "sqlite:///.", "is a folder, not a database file"
    return f"sqlite://{draw(st.sampled_from(['localhost', 'u@localhost', 'u:p@h']))}/x.db", "an SQLite URL names a file"


@settings(FEW, max_examples=60)  # each example is a few milliseconds: no database is ever opened
@given(case=bad_urls(), command=st.sampled_from([*COMMANDS, ["import", "--legacy", "legacy.json"]]))
def test_a_bad_database_url_gets_one_line_from_every_command(
    tmp_path: Path, case: tuple[str, str], command: list[str],
) -> None:
    url, message = case
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    (folder / "legacy.json").write_text(LEGACY)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        one_line_error(invoke(command, url), message)
    finally:
        os.chdir(cwd)
    assert sorted(p.name for p in folder.iterdir()) == ["legacy.json"]  # nothing created


def test_a_password_in_a_bad_url_is_not_shown() -> None:
    for url in ("postgresql://u:s3cret@localhost:x/db", "postgresql+asyncpg://u:s3cret@localhost/db"):
        line = one_line_error(invoke(["status"], url), "u:***@localhost")
        assert "s3cret" not in line


# -- read-only databases ----------------------------------------------------------------------------------------


def _can_freeze() -> bool:
    """Whether a file can be made read-only here: chmod for a user; for root, whom modes do not stop, chattr +i."""
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe"
        probe.write_text("")
        try:
            _freeze(probe)
            try:
                with probe.open("a"):
                    return False
            except PermissionError:
                return True
        finally:
            _thaw(probe)


def _freeze(path: Path) -> None:
    path.chmod(stat.S_IREAD | (stat.S_IEXEC if path.is_dir() else 0) | stat.S_IRGRP | stat.S_IROTH)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True)


def _thaw(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True)
    path.chmod(stat.S_IRWXU)


FREEZES = _can_freeze()
WAYS = ["uri", "postgresql"] + (["file", "folder"] if FREEZES else [])
WRITING = (["import", "--legacy", "{legacy}"], ["upbound", "--preset", "tiny", "--device", "cpu", "--quiet"])


@contextlib.contextmanager
def read_only(url: str, way: str) -> Iterator[str]:
    """The database at ``url`` read-only: opened so (SQLite's mode=ro, PostgreSQL's read-only transactions), its
    file or its folder unwritable; writable again afterwards."""
    if way == "postgresql":
        yield f"{url}?options=-c%20default_transaction_read_only%3Don"
        return
    path = _sqlite_file(url)
    if way == "uri":
        yield f"sqlite:///file:{path}?mode=ro&uri=true"
        return
    frozen = path if way == "file" else path.parent
    _freeze(frozen)
    try:
        yield url
    finally:
        _thaw(frozen)


@FEW
@given(way=st.sampled_from(WAYS), schema=st.booleans(), command=st.sampled_from([*COMMANDS, *WRITING]))
@example(way="uri", schema=True, command=WRITING[1])  # a sweep run: its first write says it (the tiny preset)
@example(way="postgresql", schema=True, command=WRITING[0])
@example(way=WAYS[-1], schema=True, command=WRITING[0])  # a read-only file or folder where this user can make one
def test_a_read_only_database_is_named_when_the_command_writes(
    templates: dict[str, str], tmp_path: Path, way: str, schema: bool, command: list[str],
) -> None:
    """A command that writes (an empty database's schema, results) says "read-only" in one line; reading a
    read-only sweep database works where SQLite can read it (not in a read-only folder: WAL writes next to it)."""
    legacy = tmp_path / "legacy.json"
    legacy.write_text(LEGACY)
    args = [a.replace("{legacy}", str(legacy)) for a in command]
    writes = command in WRITING or not schema and command not in (["db", "current"], ["db", "check"])
    kind = "postgresql" if way == "postgresql" else "sqlite"
    with fresh(templates, kind, "head" if schema else "empty") as url:
        before = snapshot(url)
        with read_only(url, way) as frozen:
            result = invoke(args, frozen)
        if way == "folder" and (writes or schema):
            one_line_error(result, "is read-only", "its folder")
        elif writes:
            one_line_error(result, "is read-only")
        else:
            assert result.exit_code == 0, result.output
        assert snapshot(url) == before
