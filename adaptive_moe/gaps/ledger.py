"""The knowledge-gap ledger: every query the base model was unsure of and no expert covered.

One SQLite file in the workspace (standard-library :mod:`sqlite3`), in WAL mode with
``synchronous=FULL``: every :meth:`GapLedger.record` is its own committed transaction, so a crash (even
SIGKILL or a power cut) loses at most the record in flight, and readers in other processes never block
the writer. A gap is a query of a route that found no expert; it costs one full generation, so the
fsync per record is noise beside it.

Tables::

    schema_version(version, application)      one row; identifies the file as a ledger
    gaps(id, query, created, confidence, best_expert, best_score, reason,
         dim, embedding, resolved_by, resolved_at)

Embeddings are float32 little-endian BLOBs with their dimension beside them. Entries are never
deleted when an expert comes to cover them, only marked resolved (``resolved_by``), so analyses can
show which gaps each new expert closed; retention (``max_entries``, ``max_age_days``) is what deletes.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..experts.card import validate_expert_name
from ..utils.lifecycle import Closable

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: request_id (a retried request is recorded once)
APPLICATION = "adaptive_moe gap ledger"
_COLUMNS = "id, query, created, confidence, best_expert, best_score, reason, dim, embedding, resolved_by, resolved_at"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, application TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    query TEXT NOT NULL,
    created REAL NOT NULL,
    confidence REAL,
    best_expert TEXT,
    best_score REAL,
    reason TEXT NOT NULL DEFAULT '',
    dim INTEGER,
    embedding BLOB,
    resolved_by TEXT,
    resolved_at REAL,
    request_id TEXT
);
CREATE INDEX IF NOT EXISTS gaps_created ON gaps (created);
CREATE INDEX IF NOT EXISTS gaps_resolved ON gaps (resolved_by);
CREATE UNIQUE INDEX IF NOT EXISTS gaps_request ON gaps (request_id) WHERE request_id IS NOT NULL;
"""
_MIGRATE_TO_2 = (
    "ALTER TABLE gaps ADD COLUMN request_id TEXT",
    "CREATE UNIQUE INDEX IF NOT EXISTS gaps_request ON gaps (request_id) WHERE request_id IS NOT NULL",
    "UPDATE schema_version SET version = 2",
)
_CHUNK = 500  # ids per IN (...) clause, well under SQLite's variable limit


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
               "resolved_by": self.resolved_by, "resolved_at": _iso(self.resolved_at)}  # fmt: skip
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
    """Durable record of knowledge gaps. Safe to share between threads (one lock around the
    connection); several processes may open the same file (SQLite's WAL locking).

    Args:
        path: the ledger file (created with its folder if missing); ``None`` or ``":memory:"`` keeps
            the ledger in memory (tests, throw-away sessions).
        max_entries: most entries kept, the newest by recording time; None: no limit.
        max_age_days: entries older than this are dropped; None: kept however old.

    Raises:
        InvalidInputError: the path is a folder, or a file that is not a ledger or is corrupt.
    """

    def __init__(
        self, path: str | Path | None = None, *, max_entries: int | None = 10000, max_age_days: float | None = None
    ) -> None:
        if max_entries is not None and (isinstance(max_entries, bool) or not isinstance(max_entries, int)
                                        or max_entries < 1):  # fmt: skip
            raise InvalidInputError(f"max_entries must be a positive integer or None, got {max_entries!r}")
        if max_age_days is not None and (isinstance(max_age_days, bool) or not isinstance(max_age_days, (int, float))
                                         or not max_age_days > 0 or math.isinf(max_age_days)):  # fmt: skip
            raise InvalidInputError(f"max_age_days must be a positive number of days or None, got {max_age_days!r}")
        self.max_entries, self.max_age_days = max_entries, max_age_days
        self.path = None if path is None or str(path) == ":memory:" else Path(path).expanduser()
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = self._open()

    @classmethod
    def in_memory(cls, **kwargs: Any) -> GapLedger:
        """A ledger that lives only as long as the object (same retention arguments)."""
        return cls(None, **kwargs)

    @classmethod
    def from_config(cls, config: Any, workspace: str | Path) -> GapLedger:
        """The ledger a :class:`~adaptive_moe.config.GapsConfig` describes, relative to ``workspace``."""
        path = Path(config.ledger).expanduser()
        path = path if path.is_absolute() else Path(workspace).expanduser() / path
        return cls(path, max_entries=config.max_entries, max_age_days=config.max_age_days)

    # -- opening -------------------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        where = ":memory:" if self.path is None else str(self.path)
        if self.path is not None:
            if self.path.is_dir():
                raise InvalidInputError(f"gap ledger path {where!r} is a folder; give a file path such as gaps.sqlite")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; record() and friends BEGIN/COMMIT themselves.
        conn = sqlite3.connect(where, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if self.path is not None and mode != "wal":  # e.g. a file system without shared memory
                logger.warning("gap ledger %s: journal mode %s, not WAL", where, mode)
            conn.execute("PRAGMA synchronous=FULL")  # WAL + FULL: a committed record survives a power cut
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables - {"sqlite_sequence"}:
                self._create(conn)
            elif not {"schema_version", "gaps"} <= tables:
                raise InvalidInputError(
                    f"{where!r} is an SQLite database but not a gap ledger (tables: {', '.join(sorted(tables))}); "
                    "give the path of a ledger or of a new file"
                )
            self._check_version(conn, where)
            self._migrate(conn)
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise InvalidInputError(f"gap ledger {where!r} is corrupt ({check}); move it away to start a new one")
        except sqlite3.DatabaseError as e:
            conn.close()
            raise InvalidInputError(
                f"{where!r} is not a readable gap ledger ({e}); move it away or give the path of a new file"
            ) from None
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _create(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # another process may be creating the same file right now
        try:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            if conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 0:
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (SCHEMA_VERSION, APPLICATION))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _check_version(conn: sqlite3.Connection, where: str) -> None:
        rows = conn.execute("SELECT version, application FROM schema_version").fetchall()
        if len(rows) != 1 or rows[0][1] != APPLICATION or not isinstance(rows[0][0], int):
            raise InvalidInputError(f"{where!r} is not a gap ledger (its schema_version table is {rows!r})")
        if rows[0][0] > SCHEMA_VERSION:
            raise InvalidInputError(
                f"gap ledger {where!r} has schema version {rows[0][0]}; this adaptive_moe reads up to "
                f"{SCHEMA_VERSION}: upgrade adaptive_moe"
            )

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Bring a version-1 ledger to version 2 (the request_id column) in one transaction."""
        if conn.execute("SELECT version FROM schema_version").fetchone()[0] != 1:
            return  # current: no write lock taken just to open
        conn.execute("BEGIN IMMEDIATE")  # another process may be migrating the same file
        try:
            if conn.execute("SELECT version FROM schema_version").fetchone()[0] == 1:
                for statement in _MIGRATE_TO_2:
                    conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise InvalidInputError("the gap ledger is closed; open a new GapLedger")
        return self._conn

    def _write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``work`` in one committed transaction (rolled back whole on any error)."""
        with self._lock:
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return out

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

        def work(conn: sqlite3.Connection) -> int:
            if request_id is not None:
                row = conn.execute("SELECT id FROM gaps WHERE request_id = ?", (request_id,)).fetchone()
                if row is not None:
                    return int(row[0])
            if vector is not None:
                row = conn.execute("SELECT dim FROM gaps WHERE dim IS NOT NULL LIMIT 1").fetchone()
                if row is not None and row[0] != vector.size:
                    raise InvalidInputError(
                        f"embedding has {vector.size} dimensions; the ledger's embeddings have {row[0]} "
                        "(record embeddings from the same embedder, or None)"
                    )
            cur = conn.execute(
                "INSERT INTO gaps (query, created, confidence, best_expert, best_score, reason, dim, embedding, "
                "request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (query, float(created), confidence, best_expert, best_score, reason,
                 None if vector is None else int(vector.size),
                 None if vector is None else vector.astype("<f4").tobytes(), request_id),
            )  # fmt: skip
            self._retain(conn)
            return int(cur.lastrowid)

        return self._write(work)

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

    def _retain(self, conn: sqlite3.Connection, now: float | None = None) -> int:
        removed = 0
        if self.max_age_days is not None:
            cutoff = (time.time() if now is None else now) - self.max_age_days * 86400.0
            removed += conn.execute("DELETE FROM gaps WHERE created < ?", (cutoff,)).rowcount
        if self.max_entries is not None:
            excess = conn.execute("SELECT COUNT(*) FROM gaps").fetchone()[0] - self.max_entries
            if excess > 0:  # drop the oldest; counting first keeps the common case to one cheap query
                removed += conn.execute(
                    "DELETE FROM gaps WHERE id IN (SELECT id FROM gaps ORDER BY created, id LIMIT ?)", (excess,)
                ).rowcount
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

        def work(conn: sqlite3.Connection) -> list[int]:
            done: list[int] = []
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT id FROM gaps WHERE resolved_by IS NULL AND id IN ({marks})", chunk)
                found = [r[0] for r in rows]
                if found:
                    conn.execute(f"UPDATE gaps SET resolved_by = ?, resolved_at = ? WHERE id IN "
                                 f"({','.join('?' * len(found))})", [expert, now, *found])  # fmt: skip
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
        sql = "UPDATE gaps SET resolved_by = NULL, resolved_at = NULL WHERE resolved_by = ?"
        return self._write(lambda conn: conn.execute(sql, (expert,)).rowcount)

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
        where, args = self._filter(resolved)
        if since is not None:
            if isinstance(since, datetime):
                since = (since if since.tzinfo else since.replace(tzinfo=timezone.utc)).timestamp()
            elif isinstance(since, bool) or not isinstance(since, (int, float)):
                raise InvalidInputError(f"since must be UTC epoch seconds, a datetime or None, got {since!r}")
            where, args = [*where, "created >= ?"], [*args, float(since)]
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise InvalidInputError(f"limit must be a non-negative integer or None, got {limit!r}")
        sql = f"SELECT {_COLUMNS} FROM gaps" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY created DESC, id DESC" + ("" if limit is None else f" LIMIT {limit}")
        with self._lock:
            rows = self._db().execute(sql, args).fetchall()
        return [self._entry(r) for r in reversed(rows)]

    @staticmethod
    def _filter(resolved: bool | None) -> tuple[list[str], list[Any]]:
        if resolved is None:
            return [], []
        if not isinstance(resolved, bool):
            raise InvalidInputError(f"resolved must be True, False or None, got {resolved!r}")
        return ["resolved_by IS NOT NULL" if resolved else "resolved_by IS NULL"], []

    @staticmethod
    def _entry(row: tuple) -> GapEntry:
        id_, query, created, conf, best, score, reason, dim, blob, by, at = row
        vector = None
        if blob is not None:
            vector = np.frombuffer(blob, dtype="<f4").astype(np.float32)
            if vector.size != dim:
                raise InvalidInputError(f"gap {id_}: stored embedding has {vector.size} values, not {dim}; corrupt")
        return GapEntry(id_, query, created, conf, best, score, reason, vector, by, at)

    def count(self, resolved: bool | None = None) -> int:
        """How many entries (``resolved`` as in :meth:`entries`; default: all)."""
        where, args = self._filter(resolved)
        with self._lock:
            sql = "SELECT COUNT(*) FROM gaps" + (f" WHERE {where[0]}" if where else "")
            return int(self._db().execute(sql, args).fetchone()[0])

    def __len__(self) -> int:
        """Open (unresolved) gaps."""
        return self.count(resolved=False)

    @property
    def dim(self) -> int | None:
        """Dimension of the stored embeddings, or None when none is stored."""
        with self._lock:
            row = self._db().execute("SELECT dim FROM gaps WHERE dim IS NOT NULL LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    @property
    def journal_mode(self) -> str:
        """SQLite's journal mode of the ledger file (``wal`` unless the file system refuses it)."""
        with self._lock:
            return str(self._db().execute("PRAGMA journal_mode").fetchone()[0])

    # -- lifetime ------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._conn is None

    def close(self) -> None:
        """Close the file (idempotent). Every record is already committed, so nothing is lost."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        where = ":memory:" if self.path is None else str(self.path)
        state = "closed" if self.closed else f"{len(self)} open gaps"
        return f"GapLedger({where!r}, {state})"
