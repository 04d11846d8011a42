"""The team review store: verdicts with attribution, sessions, resolutions and an audit log.

One database serves every reviewer: by default a SQLite file beside the cache (WAL mode, busy
timeout, writes under ``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing), or the
database named by ``CLIPMEM_DB_URL`` (PostgreSQL for teams across machines).

Verdicts are never updated in place: a reviewer who changes their mind adds a new verdict, and the
latest one (highest id) counts, except a non-lead's under a lead list, whose first, blind verdict
counts (`decisions.counted_verdicts`). The one removal is an undo right after a click, copied into
the audit log. Every write also appends a row to ``audit_log`` in the same transaction, so the log and
the data cannot disagree.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (
    DDL,
    CheckConstraint,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..cache import MAX_RUN_NAME
from ..data import CONTROL_CHARACTERS, MAX_ID_LENGTH
from ..errors import ClipmemError
from .agreement import disagreements as find_disagreements
from .decisions import UNDO_GRACE_S, counted_verdicts
from .roles import is_lead, require_lead
from .verdicts import VERDICTS, normalise_verdict

DB_URL_ENV = "CLIPMEM_DB_URL"
DB_FILE = "review.sqlite"
SCHEMA_VERSION = 2
_PG_MIGRATION_LOCK = 0x636C6970  # advisory lock key: one process migrates at a time
VERDICT_COLUMNS = [
    "id",
    "run",
    "sample_id",
    "reviewer",
    "verdict",
    "suggested_caption",
    "note",
    "created_at",
    "session_id",
]

RESOLUTION_COLUMNS = ["id", "sample_id", "verdict", "caption", "note", "resolved_by", "created_at"]


def _now() -> datetime:
    return datetime.now(UTC)


def _past_grace(given: datetime, grace_s: float | None = None) -> bool:
    """Whether a verdict given at ``given`` is older than ``grace_s`` (default ``UNDO_GRACE_S``): a slip may be
    taken back before, and blind mode shows the others' verdicts only after (``visible_decisions``)."""
    given = given if given.tzinfo else given.replace(tzinfo=UTC)
    return (_now() - given).total_seconds() > (UNDO_GRACE_S if grace_s is None else grace_s)


class VerdictStands(ClipmemError):
    """A non-lead's first verdict under a lead list, which may no longer be taken back: someone else has
    judged the sample, and the reviewer may have seen it (their own verdict lifts blind mode once it is
    ``UNDO_GRACE_S`` old)."""

    def __init__(self, sample_id: str, verdict: str) -> None:
        self.sample_id, self.verdict = sample_id, verdict
        super().__init__(
            f"your first verdict on {sample_id}, {verdict}, stays: with a lead list, each reviewer's first (blind) "
            "verdict stands once another reviewer has judged the sample; a lead can decide otherwise on Reconcile"
        )


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "clipmem_schema"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)


class Reviewer(Base):
    __tablename__ = "reviewers"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ReviewSession(Base):
    __tablename__ = "review_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run: Mapped[str] = mapped_column(String(300), index=True)
    name: Mapped[str] = mapped_column(String(300))
    overlap: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(ForeignKey("reviewers.name"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("session_id", "reviewer", "sample_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("review_sessions.id"), index=True)
    reviewer: Mapped[str] = mapped_column(ForeignKey("reviewers.name"))
    sample_id: Mapped[str] = mapped_column(String(300))
    position: Mapped[int] = mapped_column(Integer)


class Verdict(Base):
    __tablename__ = "verdicts"
    __table_args__ = (CheckConstraint(f"verdict IN {VERDICTS}", name="verdict_value"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run: Mapped[str] = mapped_column(String(300), index=True)
    sample_id: Mapped[str] = mapped_column(String(300))
    reviewer: Mapped[str] = mapped_column(ForeignKey("reviewers.name"))
    verdict: Mapped[str] = mapped_column(String(20))
    suggested_caption: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("review_sessions.id"))


class Resolution(Base):
    __tablename__ = "resolutions"
    __table_args__ = (
        CheckConstraint(f"verdict IN {VERDICTS}", name="resolution_value"),
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run: Mapped[str] = mapped_column(String(300), index=True)
    sample_id: Mapped[str] = mapped_column(String(300))
    verdict: Mapped[str] = mapped_column(String(20))
    caption: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str] = mapped_column(ForeignKey("reviewers.name"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class AuditEntry(Base):
    """Append-only: the store inserts into it and never updates or deletes."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    run: Mapped[str | None] = mapped_column(String(300))
    sample_id: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[str] = mapped_column(Text)


_APPEND_ONLY = {
    "sqlite": [
        f"CREATE TRIGGER audit_log_no_{op.lower()} BEFORE {op} ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        for op in ("UPDATE", "DELETE")
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION clipmem_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION clipmem_audit_append_only()",
    ],
}
for _dialect, _statements in _APPEND_ONLY.items():
    for _statement in _statements:  # the database itself refuses edits, not just this code
        event.listen(AuditEntry.__table__, "after_create", DDL(_statement).execute_if(dialect=_dialect))


def _create_v1(conn: Connection) -> None:
    Base.metadata.create_all(conn)


def _ids_never_reused_v2(conn: Connection) -> None:
    """SQLite gave a new verdict the id of the one just taken back (the largest), so two audit entries of
    two samples named one verdict id. AUTOINCREMENT never reuses one; SQLite cannot add it to a table, so
    verdicts and resolutions are rebuilt, their ids kept, and their counters start past every id that a
    table or the audit log has held. PostgreSQL's sequences never reuse an id."""
    if conn.dialect.name != "sqlite":
        return
    for model, audit_key in ((Verdict, "verdict_id"), (Resolution, "resolution_id")):
        table = model.__table__.name
        sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).scalar()
        if "AUTOINCREMENT" not in str(sql).upper():
            _rebuild_with_autoincrement(conn, model)
        highest = conn.exec_driver_sql(
            f"SELECT max(coalesce((SELECT max(id) FROM {table}), 0), coalesce((SELECT max(CAST(json_extract("
            f"detail, '$.{audit_key}') AS INTEGER)) FROM audit_log), 0))"
        ).scalar()
        conn.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
        conn.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, int(highest)))


def _rebuild_with_autoincrement(conn: Connection, model: type[Base]) -> None:
    table = model.__table__.name
    for (index,) in conn.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,)
    ).all():
        conn.exec_driver_sql(f'DROP INDEX "{index}"')
    conn.exec_driver_sql(f'ALTER TABLE "{table}" RENAME TO "{table}_v1"')
    model.__table__.create(conn)
    columns = ", ".join(f'"{column.name}"' for column in model.__table__.columns)
    conn.exec_driver_sql(f'INSERT INTO "{table}" ({columns}) SELECT {columns} FROM "{table}_v1"')
    conn.exec_driver_sql(f'DROP TABLE "{table}_v1"')


# UPGRADES[v] brings a database from version v to v + 1. Version 0 is an empty database.
# A fresh database runs every step in order, so each step must only assume its predecessors.
UPGRADES: dict[int, Callable[[Connection], None]] = {0: _create_v1, 1: _ids_never_reused_v2}


# Column widths of the schema: checked here so that SQLite (which ignores them) and PostgreSQL (which
# refuses longer values with a DataError) behave alike, and a bad name is a one-line ClipmemError.
MAX_REVIEWER = 200
MAX_SAMPLE_ID = MAX_ID_LENGTH
MAX_TEXT = 10_000  # suggested captions and notes
IMPORT_BATCH = 5_000  # rows per executemany in add_verdicts


def _check_name(name: Any, what: str = "reviewer", limit: int = MAX_REVIEWER) -> str:
    """A name stored in a key column: non-empty, at most ``limit`` characters, no control characters."""
    text = str(name).strip() if name is not None else ""
    if not text:
        raise ClipmemError(f"{what} name is empty")
    if len(text) > limit:
        raise ClipmemError(f"{what} name is longer than {limit} characters")
    if CONTROL_CHARACTERS.search(text):
        raise ClipmemError(f"{what} name {text[:40]!r} holds control characters")
    return text


def check_reviewer(name: Any) -> str:
    """A reviewer's name as the store keeps it, or ClipmemError saying why it cannot be one: the dashboard
    checks a typed name with it when it is entered, not when the first verdict is refused."""
    return _check_name(name)


def namesake(name: str, known: Iterable[str]) -> str | None:
    """A reviewer already known under the same name in other capitals ("bob" for "Bob"), if any: names are
    exact, so the two count as two reviewers, which a team rarely means."""
    folded = name.strip().casefold()
    return next((other for other in known if other != name.strip() and other.casefold() == folded), None)


def _check_namesakes(reviewers: list[str], known: Iterable[str]) -> None:
    """Refuse a session's reviewers that differ from each other, or from a known reviewer, only in capitals:
    " ann, bob, Bob" made "Bob" a second reviewer with his own batch, whose samples real bob never saw."""
    for index, name in enumerate(reviewers):
        other = namesake(name, reviewers[:index]) or namesake(name, known)
        if other:
            raise ClipmemError(
                f"reviewer “{name}” differs from “{other}” only in capitals: names are exact, so these would be two "
                "reviewers with a batch each; write one of them"
            )


def _check_run(run: Any) -> str:
    return _check_name(run, "run", MAX_RUN_NAME)


def _check_sample_id(sample_id: Any) -> str:
    """Sample ids are the run's own (clipmem_core.data refuses longer ones at ingest); checked again here."""
    text = str(sample_id)
    if not text or len(text) > MAX_SAMPLE_ID or CONTROL_CHARACTERS.search(text):
        raise ClipmemError(f"sample_id {text[:40]!r} is empty, longer than {MAX_SAMPLE_ID} or holds control characters")
    return text


def _optional_text(value: Any, what: str = "text") -> str | None:
    """Free text (a suggested caption, a note): None when blank; no NUL byte (PostgreSQL refuses it)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value).strip()
    if "\x00" in text:
        raise ClipmemError(f"{what} holds a NUL byte")
    if len(text) > MAX_TEXT:
        raise ClipmemError(f"{what} is longer than {MAX_TEXT:,} characters")
    return text or None


# 12/01/2026, 12.01.26, 12-01-2026: pandas read each month first, so a day-first file's dates went wrong
# without a word (some months, some days), and with them which of a reviewer's verdicts is the latest
_DAY_MONTH_ORDER = re.compile(r"\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}(\D|$)")


def given_at(value: Any) -> datetime | None:
    """When an imported verdict was given (ISO 8601, as an export writes it; no time zone means UTC), None
    when blank. Why kept: imported at the time of the import, an older verdict brought over from another
    server replaced a reviewer's newer one, and an import of the same file twice could not be told apart."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or not str(value).strip():
        return None
    if _DAY_MONTH_ORDER.match(str(value).strip()):
        raise ClipmemError(
            f"created_at {str(value)[:40]!r} does not say whether the day or the month comes first: write it "
            "year first, as ISO 8601 does (2026-01-12 09:00)"
        )
    try:
        moment = pd.Timestamp(str(value).strip())
    except ValueError:
        raise ClipmemError(f"created_at {str(value)[:40]!r} is not a date and time") from None
    if pd.isna(moment):
        raise ClipmemError(f"created_at {str(value)[:40]!r} is not a date and time")
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    moment = moment.floor("us")  # Python's datetime holds microseconds: pandas warned that it cut the rest
    if moment.to_pydatetime() > _now():
        raise ClipmemError(f"created_at {str(value)[:40]!r} is in the future")
    return moment.to_pydatetime()


def default_url(cache_root: str | os.PathLike) -> str:
    return f"sqlite:///{Path(cache_root).resolve() / DB_FILE}"


def _writable(path: Path) -> bool:
    """Whether this process may change a SQLite file: the file itself, and its folder, where SQLite keeps
    the write-ahead log and its shared-memory index beside it."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _read_only_file(url: str) -> Path | None:
    """The database file of a SQLite URL that exists but cannot be written here (a cache copied read-only,
    or shared to reviewers' accounts without write rights), else None."""
    if not url.startswith("sqlite:///") or "?" in url:
        return None
    path = Path(url.removeprefix("sqlite:///"))
    return path if path.is_file() and not _writable(path) else None


def _check_given_sqlite_folder(url: str) -> None:
    """A SQLite database named by $CLIPMEM_DB_URL (or ``url``) must lie in a folder that exists: a mistyped
    path made its folders and a new, empty database, and read-only commands reported "0 judged" or wrote an
    empty drop list without a word. The cache's own database may make its folder."""
    if not url.startswith("sqlite:///") or url.startswith("sqlite:///file:"):
        return
    folder = Path(url.removeprefix("sqlite:///").split("?", 1)[0]).parent
    if not folder.is_dir():
        raise ClipmemError(
            f"the review database {_safe_url(url)} would lie in {folder}, which does not exist: check "
            f"{DB_URL_ENV} (or create the folder for a new database)"
        )


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    read_only = _read_only_file(url)
    if read_only is not None:
        # opened for reading only: SQLite refused even to read it in place, since opening in WAL mode writes
        # the log beside it. Without write rights on its folder nothing can write it, so nothing changes it
        # while it is read (immutable).
        immutable = "&immutable=1" if not os.access(read_only.parent, os.W_OK) else ""
        url = f"sqlite:///file:{read_only}?mode=ro{immutable}&uri=true"
    elif url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_conn.cursor()
        if read_only is None:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that later tries to
        # write can fail with SQLITE_BUSY at once instead of waiting for the busy timeout.
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'DEFERRED')}")

    return engine


def _stored_version(conn: Connection) -> int:
    tables = set(inspect(conn).get_table_names())
    if SchemaVersion.__tablename__ not in tables:
        if tables & {t for t in Base.metadata.tables if t != SchemaVersion.__tablename__}:
            raise ClipmemError("the review database has tables but no schema version; refusing to touch it")
        return 0
    return conn.execute(select(func.max(SchemaVersion.version))).scalar_one() or 0


def _check_version(conn: Connection, url: str, read_only: bool = False) -> int:
    """The stored schema version; a newer one than this clipmem knows is refused, and so is an older one a
    read-only database cannot be upgraded from."""
    version = _stored_version(conn)
    if version > SCHEMA_VERSION:
        raise ClipmemError(
            f"the review database {_safe_url(url)} has schema version {version}; this clipmem "
            f"knows up to {SCHEMA_VERSION}: upgrade clipmem"
        )
    if version < SCHEMA_VERSION and read_only:
        raise ClipmemError(
            f"the review database {_safe_url(url)} has schema version {version} and is read-only here, so it "
            f"cannot be upgraded to {SCHEMA_VERSION}: open it once where it can be written"
        )
    return version


def _migrate(conn: Connection, url: str) -> None:
    """Bring the database to SCHEMA_VERSION by running the ordered upgrade steps, or refuse a newer one."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
    version = _check_version(conn, url)
    if version == SCHEMA_VERSION:
        return
    for step in range(version, SCHEMA_VERSION):
        UPGRADES[step](conn)
    SchemaVersion.__table__.create(conn, checkfirst=True)
    conn.execute(SchemaVersion.__table__.delete())
    conn.execute(insert(SchemaVersion).values(version=SCHEMA_VERSION))
    detail = json.dumps({"from": version, "to": SCHEMA_VERSION})
    conn.execute(insert(AuditEntry).values(actor="clipmem", action="schema.upgrade", detail=detail, at=_now()))


def _safe_url(url: str) -> str:
    """The URL without its password, for error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an unparseable URL)"


def open_store(cache_root: str | os.PathLike = "cache", url: str | None = None) -> ReviewStore:
    """Open (creating or upgrading) the review database: ``url``, else $CLIPMEM_DB_URL, else SQLite."""
    given = url or os.environ.get(DB_URL_ENV)
    url = given or default_url(cache_root)
    if given:
        _check_given_sqlite_folder(url)
    try:
        engine = _make_engine(url)
        store = ReviewStore(engine, _read_only_file(url))
        with store._raw_transaction(write=not store.read_only) as conn:
            if store.read_only:
                _check_version(conn, url, read_only=True)
            else:
                _migrate(conn, url)
    except SQLAlchemyError as exc:
        raise ClipmemError(
            f"cannot open the review database {_safe_url(url)}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        ) from None
    except ModuleNotFoundError as exc:
        raise ClipmemError(f"the review database {_safe_url(url)} needs the {exc.name} package") from None
    except OSError as exc:
        raise ClipmemError(f"cannot create the review database {_safe_url(url)}: {exc}") from None
    return store


_CONTENT = (
    Verdict.sample_id,
    Verdict.reviewer,
    Verdict.verdict,
    Verdict.suggested_caption,
    Verdict.note,
    Verdict.session_id,
)


def _match_ids(rows: list[dict], returned: Any) -> list[int]:
    """The id of each inserted row, in ``rows`` order.

    A multi-row RETURNING gives no order guarantee (and asking SQLAlchemy for one makes SQLite insert
    row by row), so ids are matched by content; identical rows get their ids in ascending order, which
    is the order they were inserted in.
    """
    ids: dict[tuple, list[int]] = defaultdict(list)
    for verdict_id, *content in returned:
        ids[tuple(content)].append(verdict_id)
    for found in ids.values():
        found.sort(reverse=True)
    return [ids[tuple(row[c.key] for c in _CONTENT)].pop() for row in rows]


class ReviewStore:
    """All reads and writes of review data. Thread-safe: each call takes its own connection."""

    def __init__(self, engine: Engine, read_only_file: Path | None = None) -> None:
        self.engine = engine
        self.read_only_file = read_only_file  # a SQLite file this process may not write: shown, never written

    @property
    def read_only(self) -> bool:
        return self.read_only_file is not None

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _raw_transaction(self, write: bool = False) -> Iterator[Connection]:
        options = {"sqlite_begin": "IMMEDIATE" if write else "DEFERRED"}
        with self.engine.connect() as conn:
            conn.execution_options(**options)
            with conn.begin():
                yield conn

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Connection]:
        """One transaction; a database error (server gone, a value it refuses) is a one-line ClipmemError."""
        if write and self.read_only:
            raise ClipmemError(
                f"the review database {self.read_only_file} is read-only here, so nothing can be recorded in it; "
                f"to review, point {DB_URL_ENV} at a database you can write"
            )
        try:
            with self._raw_transaction(write) as conn:
                yield conn
        except SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise ClipmemError(
                f"the review database {_safe_url(self.engine.url.render_as_string(hide_password=True))} "
                f"failed: {exc.__class__.__name__}: {detail[0] if detail else ''}"
            ) from None

    # -- writes -----------------------------------------------------------------------------

    def _ensure_reviewer(self, conn: Connection, name: str) -> None:
        make = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(make(Reviewer).values(name=name, created_at=_now()).on_conflict_do_nothing())

    @staticmethod
    def _audit(
        conn: Connection, actor: str, action: str, run: str | None = None, sample_id: str | None = None, **detail: Any
    ) -> None:
        conn.execute(
            insert(AuditEntry).values(
                at=_now(),
                actor=actor,
                action=action,
                run=run,
                sample_id=sample_id,
                detail=json.dumps(detail, sort_keys=True, default=str),
            )
        )

    @staticmethod
    def _verdict_values(run: str, record: dict) -> dict:
        """The checked row of one verdict record: ClipmemError names the first bad field."""
        return {
            "run": run,
            "sample_id": _check_sample_id(record["sample_id"]),
            "reviewer": _check_name(record["reviewer"]),
            "verdict": normalise_verdict(record["verdict"]),
            "suggested_caption": _optional_text(record.get("suggested_caption"), "suggested caption"),
            "note": _optional_text(record.get("note"), "note"),
            "session_id": None if record.get("session_id") is None else int(record["session_id"]),
            "created_at": given_at(record.get("created_at")) or _now(),
        }

    @staticmethod
    def _verdict_audit(values: dict, verdict_id: int) -> dict:
        detail = {k: values[k] for k in ("verdict", "suggested_caption", "note", "session_id", "created_at")}
        return {
            "at": _now(),  # when it was recorded here; an imported verdict keeps when it was given (detail)
            "actor": values["reviewer"],
            "action": "verdict",
            "run": values["run"],
            "sample_id": values["sample_id"],
            "detail": json.dumps({"verdict_id": verdict_id, **detail}, sort_keys=True, default=str),
        }

    def _insert_verdict(self, conn: Connection, run: str, record: dict) -> int:
        values = self._verdict_values(run, record)
        self._ensure_reviewer(conn, values["reviewer"])
        verdict_id = conn.execute(insert(Verdict).values(**values).returning(Verdict.id)).scalar_one()
        conn.execute(insert(AuditEntry).values(**self._verdict_audit(values, verdict_id)))
        return verdict_id

    def add_verdict(
        self,
        run: str,
        sample_id: str,
        reviewer: str,
        verdict: str,
        suggested_caption: str | None = None,
        note: str | None = None,
        session_id: int | None = None,
    ) -> int:
        """Record one reviewer's verdict on one sample; returns the verdict id."""
        run = _check_run(run)
        record = {
            "sample_id": sample_id,
            "reviewer": reviewer,
            "verdict": verdict,
            "suggested_caption": suggested_caption,
            "note": note,
            "session_id": session_id,
        }
        with self._transaction(write=True) as conn:
            return self._insert_verdict(conn, run, record)

    def undo_verdict(self, run: str, verdict_id: int, reviewer: str, grace_s: float | None = None) -> bool:
        """Take back a verdict just given by mistake: remove it, keeping a copy in the audit log.

        Only the reviewer who gave it may; returns whether a verdict was removed. Under a lead list a
        non-lead's first verdict on a sample that anyone else has judged stands once it is older than
        ``grace_s`` (default ``UNDO_GRACE_S``; ``VerdictStands``): after the grace blind mode shows them the
        other verdicts, and an undo minutes later let them vote again after seeing the disagreement. A slip
        of the finger is taken back at once, as the undo is offered.
        """
        reviewer = _check_name(reviewer)
        with self._transaction(write=True) as conn:
            columns = [getattr(Verdict, c) for c in VERDICT_COLUMNS]
            found = conn.execute(
                select(*columns).where(Verdict.id == int(verdict_id), Verdict.run == run, Verdict.reviewer == reviewer)
            ).first()
            if found is None:
                return False
            late = _past_grace(found.created_at, grace_s)
            seen = late and self._first_verdict_seen(conn, run, found.sample_id, reviewer, found.id)
            if seen:
                raise VerdictStands(found.sample_id, found.verdict)
            conn.execute(delete(Verdict).where(Verdict.id == int(verdict_id)))
            detail = {k: v for k, v in zip(VERDICT_COLUMNS, found) if k not in ("run", "sample_id", "reviewer")}
            self._audit(conn, reviewer, "verdict.undo", run, found.sample_id, **detail)
        return True

    def withdraw_verdicts(
        self, run: str, sample_id: str, reviewer: str, shown: str | None = None, grace_s: float | None = None
    ) -> int:
        """Take back every verdict ``reviewer`` gave on a sample, so that the sample is theirs to judge again
        (a card's filled verdict button, clicked again); a copy of each stays in the audit log. All of them,
        not the last: an earlier one would count again in its place. With ``shown`` (the verdict the button
        showed), nothing is taken back unless it is still the reviewer's latest: a tab drawn before another tab
        changed the verdict took back the newer one. Under a lead list a non-lead's first verdict stands once
        anyone else has judged the sample (``VerdictStands``) and it is older than ``grace_s`` (default
        ``UNDO_GRACE_S``): within the grace blind mode shows the reviewer their own verdict alone, so a slip
        may go. Returns how many were removed."""
        reviewer = _check_name(reviewer)
        with self._transaction(write=True) as conn:
            columns = [getattr(Verdict, c) for c in VERDICT_COLUMNS]
            where = (Verdict.run == run, Verdict.sample_id == str(sample_id), Verdict.reviewer == reviewer)
            found = conn.execute(select(*columns).where(*where).order_by(Verdict.created_at, Verdict.id)).all()
            if found and shown is not None and found[-1].verdict != shown:
                return 0
            late = bool(found) and _past_grace(found[0].created_at, grace_s)
            if late and self._first_verdict_seen(conn, run, str(sample_id), reviewer):
                raise VerdictStands(str(sample_id), found[0].verdict)
            if found:
                conn.execute(delete(Verdict).where(Verdict.id.in_([row.id for row in found])))
            for row in found:
                detail = {k: v for k, v in zip(VERDICT_COLUMNS, row) if k not in ("run", "sample_id", "reviewer")}
                self._audit(conn, reviewer, "verdict.withdraw", run, row.sample_id, **detail)
        return len(found)

    @staticmethod
    def _first_verdict_seen(
        conn: Connection, run: str, sample_id: str, reviewer: str, verdict_id: int | None = None
    ) -> bool:
        """Whether taking back ``reviewer``'s verdicts on the sample (only ``verdict_id``, if given) would
        remove a first, blind verdict that may no longer be blind: a non-lead under a lead list, whose first
        verdict it is, on a sample someone else has judged too."""
        if is_lead(reviewer):
            return False
        first = conn.execute(
            select(Verdict.id)
            .where(Verdict.run == run, Verdict.sample_id == sample_id, Verdict.reviewer == reviewer)
            .order_by(Verdict.created_at, Verdict.id)
            .limit(1)
        ).scalar()
        if verdict_id is not None and first != verdict_id:
            return False  # a later verdict: it never counted, so taking it back changes nothing
        others = select(Verdict.id).where(
            Verdict.run == run, Verdict.sample_id == sample_id, Verdict.reviewer != reviewer
        )
        return conn.execute(others.limit(1)).first() is not None

    def add_verdicts(self, run: str, records: Iterable[dict]) -> int:
        """Record many verdicts in one transaction: all of them or, on any bad record, none.

        Every record is checked before the database is touched; then the rows go in with one
        ``executemany`` per IMPORT_BATCH rows (verdicts, then their audit entries). A row-at-a-time
        loop held SQLite's write lock for 110 s over 200k rows, so other reviewers' writes failed with
        "database is locked"; batched, the lock is held for seconds (docs/benchmarks.md). The whole
        import stays one transaction: committing batch by batch would release the lock in between but
        could leave half an import behind, which the append-only audit log could never take back.
        """
        run = _check_run(run)
        rows = [self._verdict_values(run, record) for record in records]
        if not rows:
            return 0
        with self._transaction(write=True) as conn:
            for reviewer in sorted({row["reviewer"] for row in rows}):
                self._ensure_reviewer(conn, reviewer)
            for start in range(0, len(rows), IMPORT_BATCH):
                batch = rows[start : start + IMPORT_BATCH]
                ids = _match_ids(batch, conn.execute(insert(Verdict).returning(Verdict.id, *_CONTENT), batch))
                conn.execute(insert(AuditEntry), [self._verdict_audit(r, i) for r, i in zip(batch, ids)])
        return len(rows)

    def create_session(
        self, run: str, name: str, sample_ids: Sequence[str], reviewers: Sequence[str], overlap: int, created_by: str
    ) -> int:
        """Split samples into per-reviewer batches so each sample goes to ``overlap`` distinct reviewers. A
        session's name is unique within its run: the sessions are told apart by it."""
        run, name, created_by = _check_run(run), _check_name(name, "session", MAX_RUN_NAME), _check_name(created_by)
        reviewers = list(dict.fromkeys(_check_name(r) for r in reviewers))
        sample_ids = list(dict.fromkeys(_check_sample_id(s) for s in sample_ids))
        if not sample_ids:
            raise ClipmemError("a review session needs at least one sample")
        if not reviewers:
            raise ClipmemError("a review session needs at least one reviewer")
        if not 1 <= int(overlap) <= len(reviewers):
            raise ClipmemError(f"overlap must be between 1 and the number of reviewers ({len(reviewers)})")
        _check_namesakes(reviewers, self.reviewer_names())
        with self._transaction(write=True) as conn:
            same_name = select(ReviewSession.id).where(ReviewSession.run == run, ReviewSession.name == name)
            taken = conn.execute(same_name).scalar()
            if taken is not None:  # a second press of "Create session" assigned every sample twice
                raise ClipmemError(f"a review session named {name!r} exists already for this run (#{taken})")
            for person in {created_by, *reviewers}:
                self._ensure_reviewer(conn, person)
            session_id = conn.execute(
                insert(ReviewSession)
                .values(
                    run=run,
                    name=name,
                    overlap=int(overlap),
                    created_by=created_by,
                    created_at=_now(),
                )
                .returning(ReviewSession.id)
            ).scalar_one()
            rows = [
                {
                    "session_id": session_id,
                    "reviewer": reviewers[(i * overlap + j) % len(reviewers)],
                    "sample_id": sid,
                    "position": i,
                }
                for i, sid in enumerate(sample_ids)
                for j in range(overlap)
            ]
            conn.execute(insert(Assignment), rows)
            self._audit(
                conn,
                created_by,
                "session.create",
                run,
                session_id=session_id,
                name=name,
                reviewers=reviewers,
                overlap=overlap,
                n_samples=len(sample_ids),
            )
        return session_id

    def resolve(
        self,
        run: str,
        sample_id: str,
        verdict: str,
        resolved_by: str,
        caption: str | None = None,
        note: str | None = None,
    ) -> int:
        """Settle a sample's verdict (a lead's decision overrides the majority); the latest one counts.

        Refuses a non-lead when $CLIPMEM_LEADS is set, whatever the caller checked before.
        """
        record = {
            "sample_id": sample_id,
            "verdict": verdict,
            "resolved_by": resolved_by,
            "caption": caption,
            "note": note,
        }
        values = self._resolution_values(_check_run(run), record)
        resolved_by = values["resolved_by"]
        with self._transaction(write=True) as conn:
            self._ensure_reviewer(conn, resolved_by)
            rid = conn.execute(insert(Resolution).values(**values).returning(Resolution.id)).scalar_one()
            self._audit(
                conn,
                resolved_by,
                "resolve",
                run,
                values["sample_id"],
                resolution_id=rid,
                verdict=values["verdict"],
                caption=values["caption"],
                note=values["note"],
            )
        return rid

    def undo_resolution(self, run: str, resolution_id: int, lead: str) -> bool:
        """Take back a resolution just made by mistake (a key pressed on the wrong disagreement): remove it,
        keeping a copy in the audit log, so the sample is open again (or an earlier resolution counts).

        Only the lead who made it may; returns whether a resolution was removed.
        """
        lead = _check_name(lead)
        require_lead(lead)
        with self._transaction(write=True) as conn:
            found = conn.execute(
                select(Resolution.sample_id, Resolution.verdict, Resolution.caption).where(
                    Resolution.id == int(resolution_id), Resolution.run == run, Resolution.resolved_by == lead
                )
            ).first()
            if found is None:
                return False
            conn.execute(delete(Resolution).where(Resolution.id == int(resolution_id)))
            self._audit(
                conn,
                lead,
                "resolve.undo",
                run,
                found.sample_id,
                resolution_id=int(resolution_id),
                verdict=found.verdict,
                caption=found.caption,
            )
        return True

    # -- reads ------------------------------------------------------------------------------

    def _frame(self, query: Any, columns: list[str]) -> pd.DataFrame:
        with self._transaction() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=columns)
        if "created_at" in frame:
            frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        return frame

    def verdicts(self, run: str, sample_ids: Iterable[str] | None = None, reviewer: str | None = None) -> pd.DataFrame:
        """Every verdict on a run (history included), oldest first: by when it was given (an imported one keeps
        its time), then by when it was recorded."""
        query = select(*(getattr(Verdict, c) for c in VERDICT_COLUMNS)).where(Verdict.run == run)
        if reviewer is not None:
            query = query.where(Verdict.reviewer == reviewer)
        frame = self._frame(query.order_by(Verdict.created_at, Verdict.id), VERDICT_COLUMNS)
        frame["session_id"] = frame["session_id"].astype("Int64")  # nullable: NaN would make it float
        if sample_ids is not None:
            frame = frame[frame["sample_id"].isin(set(map(str, sample_ids)))].reset_index(drop=True)
        return frame

    def reviewer_names(self) -> list[str]:
        """Every name that has given a verdict or a resolution here, in the order they first did."""
        with self._transaction() as conn:
            return list(conn.execute(select(Reviewer.name).order_by(Reviewer.created_at, Reviewer.name)).scalars())

    def latest_verdicts(self, run: str, reviewer: str | None = None) -> dict[str, str]:
        """sample_id -> the most recent verdict (of ``reviewer`` if given, else of anyone)."""
        frame = self.verdicts(run, reviewer=reviewer)
        return dict(zip(frame["sample_id"], frame["verdict"]))  # later rows overwrite earlier ones

    def judged(self, run: str, reviewer: str, sample_ids: Iterable[str] | None = None) -> set[str]:
        """The samples (of ``sample_ids``, when given) ``reviewer`` has a verdict on.

        One narrow query: the review page asks it on every click, for the batch at hand only.
        """
        query = select(Verdict.sample_id).where(Verdict.run == run, Verdict.reviewer == reviewer).distinct()
        if sample_ids is not None:
            query = query.where(Verdict.sample_id.in_([str(s) for s in sample_ids]))
        with self._transaction() as conn:
            return set(conn.execute(query).scalars())

    def resolved(self, run: str, sample_ids: Iterable[str]) -> set[str]:
        """The samples of ``sample_ids`` a lead has resolved: final, so a review queue leaves them out (the
        lead's own queue served the samples they had just resolved)."""
        ids = [str(s) for s in sample_ids]
        query = select(Resolution.sample_id).where(Resolution.run == run, Resolution.sample_id.in_(ids)).distinct()
        with self._transaction() as conn:
            return set(conn.execute(query).scalars())

    def current_verdicts(self, run: str, sample_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Each reviewer's counted verdict per sample (see `counted_verdicts`): the input to agreement,
        decisions, reconciliation and exports."""
        return counted_verdicts(self.verdicts(run, sample_ids))

    def resolutions(self, run: str, *, history: bool = False) -> pd.DataFrame:
        """The latest resolution per sample (every one, oldest first, with ``history``): latest by when it was
        made (an imported one keeps its time), then by when it was recorded."""
        query = select(*(getattr(Resolution, c) for c in RESOLUTION_COLUMNS)).where(Resolution.run == run)
        frame = self._frame(query.order_by(Resolution.created_at, Resolution.id), RESOLUTION_COLUMNS)
        return frame if history else frame.drop_duplicates("sample_id", keep="last").reset_index(drop=True)

    @staticmethod
    def _resolution_values(run: str, record: dict) -> dict:
        """The checked row of one resolution, its lead's right to resolve included: ClipmemError names the
        first bad field."""
        lead = _check_name(record["resolved_by"], "lead (resolved_by)")
        require_lead(lead)
        return {
            "run": run,
            "sample_id": _check_sample_id(record["sample_id"]),
            "verdict": normalise_verdict(record["verdict"]),
            "caption": _optional_text(record.get("caption"), "caption"),
            "note": _optional_text(record.get("note"), "note"),
            "resolved_by": lead,
            "created_at": given_at(record.get("created_at")) or _now(),
        }

    def add_resolutions(self, run: str, records: Iterable[dict]) -> int:
        """Record many lead resolutions (``sample_id``, ``verdict``, ``resolved_by``[, ``caption``, ``note``,
        ``created_at``]) in one transaction: all of them or, on any bad record, none. Each ``resolved_by`` must
        be a lead, as for ``resolve``."""
        run = _check_run(run)
        rows = [self._resolution_values(run, record) for record in records]
        if not rows:
            return 0
        with self._transaction(write=True) as conn:
            for lead in sorted({row["resolved_by"] for row in rows}):
                self._ensure_reviewer(conn, lead)
            conn.execute(insert(Resolution), rows)
            audits = [
                {
                    "at": _now(),
                    "actor": row["resolved_by"],
                    "action": "resolve.import",
                    "run": run,
                    "sample_id": row["sample_id"],
                    "detail": json.dumps(
                        {k: row[k] for k in ("verdict", "caption", "note", "created_at")}, sort_keys=True, default=str
                    ),
                }
                for row in rows
            ]
            conn.execute(insert(AuditEntry), audits)
        return len(rows)

    def review_runs(self) -> dict[str, int]:
        """Every run name the database holds verdicts for, with how many."""
        query = select(Verdict.run, func.count()).group_by(Verdict.run)
        with self._transaction() as conn:
            return {str(run): int(count) for run, count in conn.execute(query).all()}

    def rename_run(self, old: str, new: str, actor: str) -> int:
        """Move a run's verdicts, resolutions and review sessions to its new name; returns the verdicts moved.

        Why: review data is kept by run name, and a run folder renamed (two servers' runs brought into one
        cache, a clearer name) showed none of its verdicts, without a word. A name that already has verdicts
        is refused: the two histories would mix."""
        old, new, actor = _check_run(old), _check_run(new), _check_name(actor)
        if old == new:
            raise ClipmemError(f"the run is already called {new}")
        with self._transaction(write=True) as conn:
            taken = conn.execute(select(func.count()).select_from(Verdict).where(Verdict.run == new)).scalar_one()
            if taken:
                raise ClipmemError(f"run {new} has verdicts of its own ({taken}): nothing moved")
            moved = conn.execute(update(Verdict).where(Verdict.run == old).values(run=new)).rowcount
            if not moved:
                raise ClipmemError(f"the review database holds no verdicts for a run called {old}")
            for table in (Resolution, ReviewSession):
                conn.execute(update(table).where(table.run == old).values(run=new))
            self._ensure_reviewer(conn, actor)
            self._audit(conn, actor, "run.rename", new, None, renamed_from=old, verdicts=moved)
        return int(moved)

    def sessions(self, run: str) -> pd.DataFrame:
        cols = ["id", "name", "overlap", "created_by", "created_at"]
        query = select(*(getattr(ReviewSession, c) for c in cols)).where(ReviewSession.run == run)
        return self._frame(query.order_by(ReviewSession.id), cols)

    def _session_run(self, conn: Connection, session_id: int) -> str:
        run = conn.execute(select(ReviewSession.run).where(ReviewSession.id == session_id)).scalar()
        if run is None:
            raise ClipmemError(f"there is no review session {session_id}")
        return run

    def _assignments(self, session_id: int) -> tuple[str, pd.DataFrame]:
        session_id = int(session_id)
        with self._transaction() as conn:
            run = self._session_run(conn, session_id)
            rows = conn.execute(
                select(Assignment.reviewer, Assignment.sample_id)
                .where(Assignment.session_id == session_id)
                .order_by(Assignment.position, Assignment.id)
            ).all()
        return run, pd.DataFrame([tuple(r) for r in rows], columns=["reviewer", "sample_id"])

    def session_samples(self, session_id: int) -> list[str]:
        _, assigned = self._assignments(session_id)
        return list(dict.fromkeys(assigned["sample_id"]))

    def _judged(self, run: str, assigned: pd.DataFrame) -> pd.Series:
        """Whether each assignment's reviewer has judged its sample in the run (in or out of the session)."""
        done = self.verdicts(run, assigned["sample_id"].unique())
        pairs = set(zip(done["reviewer"], done["sample_id"]))
        return pd.Series(
            [(r, s) in pairs for r, s in zip(assigned["reviewer"], assigned["sample_id"])],
            index=assigned.index,
            dtype=bool,
        )

    def session_progress(self, session_id: int) -> pd.DataFrame:
        """Per reviewer: assigned, done, remaining and percent done."""
        run, assigned = self._assignments(session_id)
        assigned["done"] = self._judged(run, assigned)
        progress = assigned.groupby("reviewer", sort=True)["done"].agg(assigned="size", done="sum")
        progress["remaining"] = progress["assigned"] - progress["done"]
        progress["percent_done"] = (100.0 * progress["done"] / progress["assigned"]).round(1)
        return progress.reset_index()

    def queue(self, session_id: int, reviewer: str) -> list[str]:
        """The reviewer's assigned samples not yet judged, in assignment order."""
        run, assigned = self._assignments(session_id)
        assigned = assigned[assigned["reviewer"] == reviewer]
        return list(assigned.loc[~self._judged(run, assigned), "sample_id"])

    def audit_log(self, run: str | None = None) -> pd.DataFrame:
        cols = ["id", "at", "actor", "action", "run", "sample_id", "detail"]
        query = select(*(getattr(AuditEntry, c) for c in cols))
        if run is not None:
            query = query.where(AuditEntry.run == run)
        return self._frame(query.order_by(AuditEntry.id), cols)

    def disagreements(self, run: str, sample_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Samples whose reviewers disagree, with their votes and any resolution already made."""
        return find_disagreements(self.current_verdicts(run, sample_ids), self.resolutions(run))


def record_problem(kind: str, record: dict) -> str | None:
    """Why a verdict record (``kind`` "verdicts") or a lead's resolution ("resolutions") cannot be stored, the
    first bad field, or None: the checks ``add_verdicts``/``add_resolutions`` make, so that an import can
    check every row first and name each bad row's line."""
    values = ReviewStore._verdict_values if kind == "verdicts" else ReviewStore._resolution_values
    try:
        values("run", record)
    except ClipmemError as exc:
        return str(exc)
    return None
