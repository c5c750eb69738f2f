"""The gap ledger in a real PostgreSQL (a throwaway server on 127.0.0.1, started by the test session) and in
SQLite, through the same API; many processes writing one ledger lose nothing and duplicate nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from adaptive_moe import AdaptiveMoEConfig
from adaptive_moe.errors import AdaptiveMoEError, InvalidInputError
from adaptive_moe.gaps import GapLedger
from adaptive_moe.gaps.ledger import is_database_url


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """Where a ledger lives: an SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "gaps.sqlite")
    return request.getfixturevalue("postgres_url")


def test_every_operation_behaves_alike_on_both_stores(target):
    emb = np.arange(4, dtype=np.float32) / 7
    with GapLedger(target, max_entries=3) as ledger:
        first = ledger.record("Who founded Zorblax?", confidence=0.125, best_expert="people", best_score=0.25,
                              reason="no expert matched", embedding=emb, created=1000.0, request_id="r-1")  # fmt: skip
        assert ledger.record("Who founded Zorblax?", request_id="r-1", created=1001.0) == first  # a retry
        ids = [first] + [ledger.record(f"q{i}", created=1001.0 + i) for i in range(3)]
        assert [e.id for e in ledger.entries()] == ids[1:]  # the oldest went: at most 3 kept
        assert ledger.resolve(ids[1:3], "chess") == ids[1:3] and ledger.count(resolved=True) == 2
        assert ledger.reopen("chess") == 2 and len(ledger) == 3
    with GapLedger(target) as again:  # reopened: everything committed is there
        assert [e.query for e in again.entries(limit=2)] == ["q1", "q2"]
        assert again.count() == 3 and again.dim is None
        again.record("with a vector", embedding=emb)
        with pytest.raises(InvalidInputError, match="embedding has 5 dimensions; the ledger's embeddings have 4"):
            again.record("q", embedding=np.ones(5))
        [last] = again.entries(limit=1)
        assert last.embedding.dtype == np.float32 and np.array_equal(last.embedding, emb)
        assert again.backend == ("sqlite" if target.endswith(".sqlite") else "postgresql")


WRITER = textwrap.dedent("""
    import sys
    from adaptive_moe.gaps import GapLedger
    target, worker = sys.argv[1], int(sys.argv[2])
    with GapLedger(target, max_entries=None) as ledger:
        for i in range(25):
            ledger.record(f"worker {worker} query {i}", confidence=0.1)
            # every request id is sent by two workers at once: a retry landing on another replica
            ledger.record(f"shared query {i}", request_id=f"req-{worker // 2}-{i}")
""")


def test_many_processes_lose_nothing_and_duplicate_nothing(target):
    GapLedger(target).close()  # created once, then four writers at the same time
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, target, str(w)], stderr=subprocess.PIPE, text=True)
             for w in range(4)]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    with GapLedger(target, max_entries=None) as ledger:
        queries = [e.query for e in ledger.entries()]
    assert sorted(q for q in queries if q.startswith("worker")) == sorted(
        f"worker {w} query {i}" for w in range(4) for i in range(25)
    )
    assert len([q for q in queries if q.startswith("shared")]) == 2 * 25  # 2 pairs of workers x 25 ids, once each


def test_a_ledger_url_from_the_config(postgres_url, tmp_path):
    cfg = AdaptiveMoEConfig().replace(workspace=str(tmp_path / "ws"), **{"gaps.database_url": postgres_url})
    with GapLedger.from_config(cfg.gaps, cfg.workspace) as ledger:
        ledger.record("from the config")
        assert ledger.backend == "postgresql" and ledger.where == postgres_url
    assert not (tmp_path / "ws" / "gaps.sqlite").exists()  # the file is not used
    with GapLedger(postgres_url) as again:
        assert [e.query for e in again.entries()] == ["from the config"]


def test_bad_urls_and_unreachable_databases_get_clear_errors(postgres_server):
    assert is_database_url("postgresql://u@h/db") and not is_database_url("gaps.sqlite")
    with pytest.raises(InvalidInputError, match="runs on sqlite or postgresql, not 'mysql'"):
        GapLedger("mysql://user:secret@127.0.0.1/db")
    with pytest.raises(InvalidInputError, match="not a database URL"):
        GapLedger("postgresql://user@host:notaport/db")
    closed_port = postgres_server.url("missing").replace(str(postgres_server.port), "1")
    with pytest.raises(InvalidInputError, match="cannot open the gap ledger at") as err:
        GapLedger(closed_port.replace("postgres@", "postgres:hunter2@"))
    assert "hunter2" not in str(err.value)  # the password never shows
    with pytest.raises(AdaptiveMoEError, match="database_url"):
        AdaptiveMoEConfig().replace(**{"gaps.database_url": "redis://127.0.0.1/0"})


def test_a_database_with_other_tables_still_takes_a_ledger(postgres_url):
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:  # the database belongs to an application that has its own tables
        conn.exec_driver_sql("CREATE TABLE invoices (id integer)")
        conn.exec_driver_sql("CREATE TABLE gaps_other (id integer)")
    engine.dispose()
    with GapLedger(postgres_url) as ledger:
        ledger.record("beside the invoices")
        assert ledger.count() == 1
