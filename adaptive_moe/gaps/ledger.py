"""The knowledge-gap ledger: every query the base model was unsure of and no expert covered.

Stored through SQLAlchemy Core, in one of two databases:

- **SQLite** (the embedded default): one file in the workspace (``gaps.ledger``), in WAL mode with
  ``synchronous=FULL``: every :meth:`GapLedger.record` is its own committed transaction (``BEGIN
  IMMEDIATE``), so a crash (even SIGKILL or a power cut) loses at most the record in flight, and readers
  in other processes never block the writer.
- **PostgreSQL** (``gaps.database_url: postgresql://user@host/db``, through psycopg 3): for many
  processes or machines (server replicas) sharing one ledger. Each record is one transaction too; a
  request id recorded twice at once by two processes is stored once (a unique index, and the loser
  reads the winner's row).

A gap is a query of a route that found no expert; it costs one full generation, so the commit per
record is noise beside it.

Tables::

    schema_version(version, application)      one row; identifies the database as a ledger
    gaps(id, query, created, confidence, best_expert, best_score, reason,
         dim, embedding, resolved_by, resolved_at, request_id)

Embeddings are float32 little-endian bytes with their dimension beside them. Entries are never deleted
when an expert comes to cover them, only marked resolved (``resolved_by``), so analyses can show which
gaps each new expert closed; retention (``max_entries``, ``max_age_days``) is what deletes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError
from sqlalchemy.pool import StaticPool

from ..errors import InvalidInputError, missing_dependency
from ..experts.card import validate_expert_name
from ..utils.lifecycle import Closable

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: request_id (a retried request is recorded once)
APPLICATION = "adaptive_moe gap ledger"
_META = MetaData()
VERSION_TABLE = Table(
    "schema_version", _META, Column("version", Integer, nullable=False), Column("application", Text, nullable=False)
)
GAPS = Table(
    "gaps",
    _META,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("query", Text, nullable=False),
    Column("created", Double, nullable=False),
    Column("confidence", Double),
    Column("best_expert", Text),
    Column("best_score", Double),
    Column("reason", Text, nullable=False, server_default=""),
    Column("dim", Integer),
    Column("embedding", LargeBinary),
    Column("resolved_by", Text),
    Column("resolved_at", Double),
    Column("request_id", Text),
    sqlite_autoincrement=True,
)
Index("gaps_created", GAPS.c.created)
Index("gaps_resolved", GAPS.c.resolved_by)
Index("gaps_request", GAPS.c.request_id, unique=True, sqlite_where=GAPS.c.request_id.is_not(None),
      postgresql_where=GAPS.c.request_id.is_not(None))  # fmt: skip
_MIGRATE_TO_2 = (
    "ALTER TABLE gaps ADD COLUMN request_id TEXT",
    "CREATE UNIQUE INDEX IF NOT EXISTS gaps_request ON gaps (request_id) WHERE request_id IS NOT NULL",
    "UPDATE schema_version SET version = 2",
)
_COLUMNS = [GAPS.c[n] for n in ("id", "query", "created", "confidence", "best_expert", "best_score", "reason", "dim",
                                "embedding", "resolved_by", "resolved_at", "request_id")]  # fmt: skip
_CHUNK = 500  # ids per IN (...) clause, well under SQLite's variable limit
_LOCK_KEY = zlib.crc32(APPLICATION.encode())  # PostgreSQL advisory lock around creating and migrating
_SQLITE_TIMEOUT = 30.0  # seconds a SQLite connection waits for another process's lock


def is_database_url(target: Any) -> bool:
    """Whether ``target`` is an SQLAlchemy database URL (``sqlite:///...``, ``postgresql://...``) rather
    than a file path."""
    return isinstance(target, str) and "://" in target


def _engine_for(url: str) -> Engine:
    """An engine for ``url`` (``postgresql://`` uses psycopg 3); a clear error for a bad or unsupported URL."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        shown = url.rsplit("@", 1)[-1]  # no credentials in messages
        raise InvalidInputError(f"gaps.database_url '...{shown}' is not a database URL ({e})") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise missing_dependency("psycopg", extra="postgres", purpose="a gap ledger in PostgreSQL") from None
        return create_engine(parsed, pool_pre_ping=True, pool_size=2, max_overflow=2)
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            engine = create_engine(parsed, connect_args={"timeout": _SQLITE_TIMEOUT, "check_same_thread": False})
        _sqlite_settings(engine, database not in ("", ":memory:"))
        return engine
    raise InvalidInputError(
        f"gaps.database_url {parsed.render_as_string(hide_password=True)!r}: the gap ledger runs on sqlite or "
        "postgresql, not " + repr(backend)
    )


def _sqlite_settings(engine: Engine, on_disk: bool) -> None:
    """WAL and ``synchronous=FULL`` on every connection; transactions begun by hand (``BEGIN IMMEDIATE``
    for writes, so two writers never deadlock on a lock upgrade)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # no implicit transactions: the "begin" hook below starts them
        cur = dbapi_conn.cursor()
        try:
            mode = _journal_mode_wal(cur)
            if on_disk and mode != "wal":  # e.g. a file system without shared memory
                logger.warning("gap ledger: journal mode %s, not WAL", mode)
            cur.execute("PRAGMA synchronous=FULL")  # WAL + FULL: a committed record survives a power cut
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("ledger_write") else "BEGIN")


def _journal_mode_wal(cur: Any, wait: float = _SQLITE_TIMEOUT) -> str:
    """``PRAGMA journal_mode=WAL``, waiting up to ``wait`` seconds for the lock it needs.

    SQLite answers "database is locked" at once, without its busy handler, when another connection holds
    a write lock on a database still in rollback mode: two processes opening a new ledger together met
    this (found by the two-process training test). Retrying until the other connection commits is safe:
    the pragma changes nothing until it succeeds."""
    import sqlite3

    deadline = time.monotonic() + wait
    delay = 0.005
    while True:
        try:
            return str(cur.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        except sqlite3.OperationalError as e:
            if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class GapEntry:
    """One recorded gap.

    Attributes:
        id: the ledger's row id (increasing with recording order).
        query: the user's words.
        created: when it was recorded, UTC seconds since the epoch (``created_iso`` for ISO 8601).
        confidence: the base model's calibrated confidence in [0, 1] (higher = more confident), or None.
        best_expert: the highest-scoring expert although it did not match, or None.
        best_score: that expert's match score in [0, 1], or None.
        reason: the router's reason, in words.
        embedding: the query's embedding (float32, shape ``(dim,)``), or None.
        resolved_by: the expert that now covers the query, or None while it is a gap.
        resolved_at: when it was resolved (UTC epoch seconds), or None.
        request_id: the id of the request that asked (a server's ``X-Request-Id``), or None.
    """

    id: int
    query: str
    created: float
    confidence: float | None = None
    best_expert: str | None = None
    best_score: float | None = None
    reason: str = ""
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)
    resolved_by: str | None = None
    resolved_at: float | None = None
    request_id: str | None = None

    @property
    def created_iso(self) -> str:
        """When the gap was recorded, ISO 8601 in UTC."""
        return _iso(self.created) or ""

    @property
    def resolved(self) -> bool:
        """Whether an expert now covers this gap."""
        return self.resolved_by is not None

    def to_dict(self, include_embedding: bool = False) -> dict[str, Any]:
        """JSON-ready fields; times as ISO 8601 (``created_ts`` keeps the epoch float)."""
        out = {"id": self.id, "query": self.query, "created": self.created_iso, "created_ts": self.created,
               "confidence": self.confidence, "best_expert": self.best_expert, "best_score": self.best_score,
               "reason": self.reason, "embedding_dim": None if self.embedding is None else int(self.embedding.size),
               "resolved_by": self.resolved_by, "resolved_at": _iso(self.resolved_at),
               "request_id": self.request_id}  # fmt: skip
        if include_embedding:
            out["embedding"] = None if self.embedding is None else [float(v) for v in self.embedding]
        return out


def _unit_float(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InvalidInputError(f"{what} must be a number in [0, 1] or None, got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise InvalidInputError(f"{what} must be in [0, 1] (or None), got {value!r}")
    return value


def _as_vector(embedding: Any) -> np.ndarray | None:
    if embedding is None:
        return None
    if hasattr(embedding, "detach"):  # a torch tensor, without importing torch
        embedding = embedding.detach().float().cpu().numpy()
    try:
        x = np.asarray(embedding, dtype=np.float32)
    except (TypeError, ValueError):
        kind = type(embedding).__name__
        raise InvalidInputError(f"embedding must be a 1-D array of numbers or None, got {kind}") from None
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1 or x.size == 0:
        raise InvalidInputError(f"embedding must be a non-empty 1-D vector (dim,), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InvalidInputError("embedding contains NaN or infinite values; only finite numbers are allowed")
    return x


def _ids(ids: Iterable[Any]) -> list[int]:
    out = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise InvalidInputError(f"gap ids must be integers, got {i!r}")
        out.append(int(i))
    return sorted(set(out))


class GapLedger(Closable):
    """Durable record of knowledge gaps. Safe to share between threads (one lock around the database);
    several processes may open the same ledger (SQLite's WAL locking, or PostgreSQL).

    Args:
        target: the ledger file (created with its folder if missing), or an SQLAlchemy database URL
            (``sqlite:///path``, ``postgresql://user:password@host:port/database``); ``None`` or
            ``":memory:"`` keeps the ledger in memory (tests, throw-away sessions).
        max_entries: most entries kept, the newest by recording time; None: no limit.
        max_age_days: entries older than this are dropped; None: kept however old.

    Raises:
        InvalidInputError: the path is a folder, or a file or database that is not a ledger or is
            corrupt, or the URL is malformed or names another kind of database.
        MissingDependencyError: a PostgreSQL URL without psycopg installed (``adaptive-moe[postgres]``).
    """

    def __init__(
        self, target: str | Path | None = None, *, max_entries: int | None = 10000, max_age_days: float | None = None
    ) -> None:
        if max_entries is not None and (isinstance(max_entries, bool) or not isinstance(max_entries, int)
                                        or max_entries < 1):  # fmt: skip
            raise InvalidInputError(f"max_entries must be a positive integer or None, got {max_entries!r}")
        if max_age_days is not None and (isinstance(max_age_days, bool) or not isinstance(max_age_days, (int, float))
                                         or not max_age_days > 0 or math.isinf(max_age_days)):  # fmt: skip
            raise InvalidInputError(f"max_age_days must be a positive number of days or None, got {max_age_days!r}")
        self.max_entries, self.max_age_days = max_entries, max_age_days
        self.url: str | None = None
        self.path: Path | None = None
        if is_database_url(target):
            self.url = str(target)
        elif target is not None and str(target) != ":memory:":
            self.path = Path(target).expanduser()
        self._lock = threading.RLock()
        self._engine: Engine | None = self._open()

    @classmethod
    def in_memory(cls, **kwargs: Any) -> GapLedger:
        """A ledger that lives only as long as the object (same retention arguments)."""
        return cls(None, **kwargs)

    @classmethod
    def from_config(cls, config: Any, workspace: str | Path) -> GapLedger:
        """The ledger a :class:`~adaptive_moe.config.GapsConfig` describes: ``database_url`` when set, else
        the file ``ledger`` relative to ``workspace``."""
        url = getattr(config, "database_url", "") or ""
        if url:
            return cls(url, max_entries=config.max_entries, max_age_days=config.max_age_days)
        path = Path(config.ledger).expanduser()
        path = path if path.is_absolute() else Path(workspace).expanduser() / path
        return cls(path, max_entries=config.max_entries, max_age_days=config.max_age_days)

    # -- opening -------------------------------------------------------------------------------------
    @property
    def where(self) -> str:
        """The ledger's location for messages (a URL's password hidden)."""
        if self.url is not None:
            try:
                return make_url(self.url).render_as_string(hide_password=True)
            except (ArgumentError, ValueError):
                return "<malformed URL>"
        return ":memory:" if self.path is None else str(self.path)

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._db().dialect.name

    def _open(self) -> Engine:
        where = self.where
        if self.path is not None:
            if self.path.is_dir():
                raise InvalidInputError(f"gap ledger path {where!r} is a folder; give a file path such as gaps.sqlite")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        url = self.url or ("sqlite://" if self.path is None else f"sqlite:///{self.path}")
        engine = _engine_for(url)
        try:
            with engine.connect() as conn:
                tables = set(inspect(conn).get_table_names())
            ours = {"schema_version", "gaps"} & tables
            sqlite = engine.dialect.name == "sqlite"
            if not ours and (not sqlite or not tables - {"sqlite_sequence"}):
                self._create(engine)  # a new file, or a database (PostgreSQL) that may hold other tables too
            elif ours != {"schema_version", "gaps"} or (sqlite and not ours):
                raise InvalidInputError(
                    f"{where!r} is a database but not a gap ledger (tables: {', '.join(sorted(tables))}); "
                    "give the path of a ledger or of a new file"
                )
            self._check_version(engine, where)
            self._migrate(engine)
            if sqlite:
                with engine.connect() as conn:
                    check = conn.exec_driver_sql("PRAGMA quick_check").scalar()
                if check != "ok":
                    raise InvalidInputError(
                        f"gap ledger {where!r} is corrupt ({check}); move it away to start a new one"
                    )
        except DatabaseError as e:
            engine.dispose()
            if engine.dialect.name == "sqlite":
                raise InvalidInputError(
                    f"{where!r} is not a readable gap ledger ({e.orig}); move it away or give the path of a new file"
                ) from None
            raise InvalidInputError(f"cannot open the gap ledger at {where!r}: {e.orig}") from None
        except BaseException:
            engine.dispose()
            raise
        return engine

    @staticmethod
    def _writing(engine: Engine) -> Connection:
        """A connection whose transactions take the write lock at once (SQLite ``BEGIN IMMEDIATE``)."""
        return engine.connect().execution_options(ledger_write=True)

    @classmethod
    def _serialised(cls, conn: Connection) -> None:
        """In PostgreSQL, hold a transaction-long advisory lock: two processes creating or migrating the same
        ledger at once take turns (SQLite's ``BEGIN IMMEDIATE`` already does)."""
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")

    @classmethod
    def _create(cls, engine: Engine) -> None:
        with cls._writing(engine) as conn, conn.begin():  # another process may be creating it right now
            cls._serialised(conn)
            _META.create_all(conn, checkfirst=True)
            if conn.execute(select(func.count()).select_from(VERSION_TABLE)).scalar() == 0:
                conn.execute(insert(VERSION_TABLE).values(version=SCHEMA_VERSION, application=APPLICATION))

    @staticmethod
    def _check_version(engine: Engine, where: str) -> None:
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(select(VERSION_TABLE.c.version, VERSION_TABLE.c.application))]
        if len(rows) != 1 or rows[0][1] != APPLICATION or not isinstance(rows[0][0], int):
            raise InvalidInputError(f"{where!r} is not a gap ledger (its schema_version table is {rows!r})")
        if rows[0][0] > SCHEMA_VERSION:
            raise InvalidInputError(
                f"gap ledger {where!r} has schema version {rows[0][0]}; this adaptive_moe reads up to "
                f"{SCHEMA_VERSION}: upgrade adaptive_moe"
            )

    @classmethod
    def _migrate(cls, engine: Engine) -> None:
        """Bring a version-1 ledger to version 2 (the request_id column) in one transaction."""
        version = select(VERSION_TABLE.c.version)
        with engine.connect() as conn:
            if conn.execute(version).scalar() != 1:
                return  # current: no write lock taken just to open
        with cls._writing(engine) as conn, conn.begin():  # another process may be migrating it
            cls._serialised(conn)
            if conn.execute(version).scalar() == 1:
                for statement in _MIGRATE_TO_2:
                    conn.exec_driver_sql(statement)

    def _db(self) -> Engine:
        if self._engine is None:
            raise InvalidInputError("the gap ledger is closed; open a new GapLedger")
        return self._engine

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for inspection; write through the ledger's methods)."""
        return self._db()

    def _write(self, work: Callable[[Connection], Any]) -> Any:
        """Run ``work`` in one committed transaction (rolled back whole on any error)."""
        with self._lock, self._writing(self._db()) as conn, conn.begin():
            return work(conn)

    def _read(self, statement: Any) -> list[Any]:
        with self._lock, self._db().connect() as conn:
            return list(conn.execute(statement))

    # -- writing -------------------------------------------------------------------------------------
    def record(
        self,
        query: str,
        *,
        confidence: float | None = None,
        best_expert: str | None = None,
        best_score: float | None = None,
        reason: str = "",
        embedding: Any = None,
        created: float | None = None,
        request_id: str | None = None,
    ) -> int:
        """Record one gap durably (committed before this returns) and apply retention.

        Args:
            query: the user's words (non-empty).
            confidence: the base model's confidence in [0, 1], or None when the router did not judge it.
            best_expert: the highest-scoring expert, or None when there are none; ``best_score`` (in
                [0, 1]) must be given with it.
            reason: the router's reason, in words.
            embedding: the query's embedding, a 1-D vector of finite numbers with the same dimension as
                the ledger's other embeddings; or None.
            created: UTC epoch seconds (default: now).
            request_id: the id of the request that asked (a server's ``X-Request-Id``): a second record
                with the same id (a retried request) is not stored again; its first entry's id is returned.

        Returns:
            The new entry's id (or, for a request id already recorded, the existing entry's).
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError(f"query must be a non-empty string, got {query!r}")
        confidence = _unit_float(confidence, "confidence")
        best_score = _unit_float(best_score, "best_score")
        if best_expert is not None and (not isinstance(best_expert, str) or not best_expert):
            raise InvalidInputError(f"best_expert must be an expert name or None, got {best_expert!r}")
        if (best_expert is None) != (best_score is None):
            raise InvalidInputError("give best_expert and best_score together (both None when no expert scored)")
        if not isinstance(reason, str):
            raise InvalidInputError(f"reason must be a string, got {type(reason).__name__}")
        if request_id is not None and (not isinstance(request_id, str) or not request_id.strip()
                                       or len(request_id) > 200):  # fmt: skip
            raise InvalidInputError(
                f"request_id must be a non-empty string of at most 200 characters, got {request_id!r}"
            )
        vector = _as_vector(embedding)
        if created is None:
            created = time.time()
        elif isinstance(created, bool) or not isinstance(created, (int, float)) or not math.isfinite(created):
            raise InvalidInputError(f"created must be UTC epoch seconds (a finite number), got {created!r}")

        row = {"query": query, "created": float(created), "confidence": confidence, "best_expert": best_expert,
               "best_score": best_score, "reason": reason, "dim": None if vector is None else int(vector.size),
               "embedding": None if vector is None else vector.astype("<f4").tobytes(),
               "request_id": request_id}  # fmt: skip

        def recorded(conn: Connection) -> int | None:
            if request_id is None:
                return None
            return conn.execute(select(GAPS.c.id).where(GAPS.c.request_id == request_id)).scalar()

        def work(conn: Connection) -> int:
            existing = recorded(conn)
            if existing is not None:
                return int(existing)
            if vector is not None:
                dim = conn.execute(select(GAPS.c.dim).where(GAPS.c.dim.is_not(None)).limit(1)).scalar()
                if dim is not None and dim != vector.size:
                    raise InvalidInputError(
                        f"embedding has {vector.size} dimensions; the ledger's embeddings have {dim} "
                        "(record embeddings from the same embedder, or None)"
                    )
            new_id = conn.execute(insert(GAPS).values(**row).returning(GAPS.c.id)).scalar_one()
            self._retain(conn)
            return int(new_id)

        try:
            return self._write(work)
        except IntegrityError:
            # PostgreSQL: another process recorded the same request id between our look and our insert
            with self._lock, self._db().connect() as conn:
                existing = recorded(conn)
            if existing is None:
                raise
            return int(existing)

    def record_decision(self, query: str, decision: Any, embedding: Any = None, request_id: str | None = None) -> int:
        """Record a router's ``"gap"`` :class:`~adaptive_moe.routing.RouteDecision` for ``query`` (once per
        ``request_id`` when given)."""
        best = decision.best_expert
        return self.record(
            query,
            confidence=decision.confidence,
            best_expert=best[0] if best else None,
            best_score=best[1] if best else None,
            reason=decision.reason,
            embedding=embedding,
            request_id=request_id,
        )

    def _retain(self, conn: Connection, now: float | None = None) -> int:
        removed = 0
        if self.max_age_days is not None:
            cutoff = (time.time() if now is None else now) - self.max_age_days * 86400.0
            removed += conn.execute(delete(GAPS).where(GAPS.c.created < cutoff)).rowcount
        if self.max_entries is not None:
            excess = conn.execute(select(func.count()).select_from(GAPS)).scalar() - self.max_entries
            if excess > 0:  # drop the oldest; counting first keeps the common case to one cheap query
                oldest = select(GAPS.c.id).order_by(GAPS.c.created, GAPS.c.id).limit(excess)
                removed += conn.execute(delete(GAPS).where(GAPS.c.id.in_(oldest.scalar_subquery()))).rowcount
        return removed

    def prune(self, now: float | None = None) -> int:
        """Apply ``max_entries`` and ``max_age_days`` now (``now``: UTC epoch seconds); returns how many
        entries were deleted."""
        return self._write(lambda conn: self._retain(conn, now))

    def resolve(self, ids: Iterable[int], expert: str) -> list[int]:
        """Mark the gaps ``ids`` as covered by ``expert`` (a valid expert name). Ids that are unknown
        (pruned) or already resolved are skipped; returns the ids resolved now."""
        expert = validate_expert_name(expert)
        wanted, now = _ids(ids), time.time()

        def work(conn: Connection) -> list[int]:
            done: list[int] = []
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                found = sorted(conn.execute(select(GAPS.c.id).where(GAPS.c.resolved_by.is_(None),
                                                                    GAPS.c.id.in_(chunk))).scalars())  # fmt: skip
                if found:
                    conn.execute(update(GAPS).where(GAPS.c.id.in_(found)).values(resolved_by=expert, resolved_at=now))
                done.extend(found)
            return done

        return self._write(work)

    def resolve_matching(self, match: Callable[..., Any], expert: str, *, min_score: float | None = None) -> list[int]:
        """Resolve the open gaps ``expert`` now covers; returns their ids.

        Args:
            match: with ``min_score`` None, a predicate ``GapEntry -> bool``; with ``min_score`` given, a
                scores function ``(n, dim) embeddings -> list[dict[name, score in [0, 1]]]`` such as a
                router matcher's ``.scores`` (entries without an embedding are then left open).
            expert: the expert that covers them (a valid expert name).
            min_score: the match score from which ``expert`` covers a gap.
        """
        expert = validate_expert_name(expert)
        min_score = _unit_float(min_score, "min_score")
        if not callable(match):
            raise InvalidInputError(f"match must be a predicate or a scores function, got {type(match).__name__}")
        open_entries = self.entries(resolved=False)
        if min_score is None:
            chosen = [e.id for e in open_entries if match(e)]
        else:
            embedded = [e for e in open_entries if e.embedding is not None]
            scores = match(np.stack([e.embedding for e in embedded])) if embedded else []
            if len(scores) != len(embedded):
                raise InvalidInputError(f"the scores function gave {len(scores)} rows for {len(embedded)} embeddings")
            chosen = [e.id for e, s in zip(embedded, scores, strict=True) if s.get(expert, 0.0) >= min_score]
        return self.resolve(chosen, expert)

    def reopen(self, expert: str) -> int:
        """Mark every gap ``expert`` resolved as open again (the expert was removed); returns how many."""
        statement = update(GAPS).where(GAPS.c.resolved_by == expert).values(resolved_by=None, resolved_at=None)
        return self._write(lambda conn: conn.execute(statement).rowcount)

    # -- reading -------------------------------------------------------------------------------------
    def entries(
        self, resolved: bool | None = False, limit: int | None = None, since: float | datetime | None = None
    ) -> list[GapEntry]:
        """Entries in recording order (oldest first).

        Args:
            resolved: False: open gaps only; True: resolved ones only; None: both.
            limit: keep only the newest ``limit`` entries (still oldest first); None: all.
            since: only entries recorded at or after this time (UTC epoch seconds or a datetime; a naive
                datetime is taken as UTC).
        """
        where = self._filter(resolved)
        if since is not None:
            if isinstance(since, datetime):
                since = (since if since.tzinfo else since.replace(tzinfo=timezone.utc)).timestamp()
            elif isinstance(since, bool) or not isinstance(since, (int, float)):
                raise InvalidInputError(f"since must be UTC epoch seconds, a datetime or None, got {since!r}")
            where = [*where, GAPS.c.created >= float(since)]
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise InvalidInputError(f"limit must be a non-negative integer or None, got {limit!r}")
        statement = select(*_COLUMNS).where(*where).order_by(GAPS.c.created.desc(), GAPS.c.id.desc())
        rows = self._read(statement if limit is None else statement.limit(limit))
        return [self._entry(tuple(r)) for r in reversed(rows)]

    @staticmethod
    def _filter(resolved: bool | None) -> list[Any]:
        if resolved is None:
            return []
        if not isinstance(resolved, bool):
            raise InvalidInputError(f"resolved must be True, False or None, got {resolved!r}")
        return [GAPS.c.resolved_by.is_not(None) if resolved else GAPS.c.resolved_by.is_(None)]

    @staticmethod
    def _entry(row: tuple) -> GapEntry:
        id_, query, created, conf, best, score, reason, dim, blob, by, at, request_id = row
        vector = None
        if blob is not None:
            vector = np.frombuffer(bytes(blob), dtype="<f4").astype(np.float32)
            if vector.size != dim:
                raise InvalidInputError(f"gap {id_}: stored embedding has {vector.size} values, not {dim}; corrupt")
        return GapEntry(id_, query, created, conf, best, score, reason, vector, by, at, request_id)

    def count(self, resolved: bool | None = None) -> int:
        """How many entries (``resolved`` as in :meth:`entries`; default: all)."""
        [(n,)] = self._read(select(func.count()).select_from(GAPS).where(*self._filter(resolved)))
        return int(n)

    def __len__(self) -> int:
        """Open (unresolved) gaps."""
        return self.count(resolved=False)

    @property
    def dim(self) -> int | None:
        """Dimension of the stored embeddings, or None when none is stored."""
        rows = self._read(select(GAPS.c.dim).where(GAPS.c.dim.is_not(None)).limit(1))
        return None if not rows else int(rows[0][0])

    @property
    def journal_mode(self) -> str:
        """SQLite's journal mode of the ledger file (``wal`` unless the file system refuses it); for
        PostgreSQL, ``"postgresql"`` (its own write-ahead log)."""
        if self.backend != "sqlite":
            return self.backend
        with self._lock, self._db().connect() as conn:
            return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar())

    def pragma(self, name: str) -> Any:
        """An SQLite ``PRAGMA`` of the ledger's connections (``synchronous``, ``integrity_check``...)."""
        if self.backend != "sqlite" or not name.replace("_", "").isalpha():
            raise InvalidInputError(f"pragma {name!r}: a PRAGMA name of an SQLite ledger")
        with self._lock, self._db().connect() as conn:
            return conn.exec_driver_sql(f"PRAGMA {name}").scalar()

    # -- lifetime ------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._engine is None

    def close(self) -> None:
        """Close the database connections (idempotent). Every record is already committed, so nothing is
        lost."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self)} open gaps"
        return f"GapLedger({self.where!r}, {state})"
