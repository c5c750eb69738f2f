"""The knowledge-gap ledger (SQLite, WAL, crash safety, retention, resolution) and gap analysis
(clusters of hand-made embeddings with exact expectations)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import sqlalchemy

from adaptive_moe.config import AdaptiveMoEConfig, GapsConfig
from adaptive_moe.errors import AdaptiveMoEError, InvalidInputError
from adaptive_moe.experts.card import validate_expert_name
from adaptive_moe.gaps import GapCluster, GapEntry, GapLedger, GapReport, analyze_gaps
from adaptive_moe.gaps import analysis as analysis_module
from adaptive_moe.routing import KNNMatcher, RouteDecision

DIM = 16
TOPICS = {
    "volcano": [
        "Why do volcano eruptions produce lava?",
        "How hot is the magma under a volcano?",
        "When did the volcano eruption on the island start?",
        "What is volcano lava made of?",
        "Can a dormant volcano erupt again?",
        "How far does volcano ash travel?",
    ],
    "chess": [
        "What is the best chess opening for beginners?",
        "Explain the queen's gambit in chess",
        "How do chess grandmasters prepare openings?",
        "Is the king's gambit in chess sound?",
        "Why is the chess endgame so hard?",
        "How are chess ratings computed?",
    ],
    "tax": [
        "Can I claim a tax deduction for my home office?",
        "When will my tax refund arrive?",
        "Which tax deduction applies to students?",
        "How is the tax refund computed?",
        "Do freelancers pay tax quarterly?",
        "What tax forms does a landlord file?",
    ],
}
OUTLIERS = ["Tell me a joke about penguins", "Translate good morning into Klingon"]


def blobs(seed: int = 0):
    """Three well-separated Gaussian blobs (one per topic) plus two outliers, in 16 dimensions."""
    rng = np.random.default_rng(seed)
    axes = np.linalg.qr(rng.normal(size=(DIM, len(TOPICS) + len(OUTLIERS))))[0].T * 4  # orthogonal directions
    centers = dict(zip(TOPICS, axes, strict=False))
    rows = [(q, t, centers[t] + rng.normal(size=DIM) * 0.3) for t, qs in TOPICS.items() for q in qs]
    rows += [(q, None, axis) for q, axis in zip(OUTLIERS, axes[len(TOPICS) :], strict=True)]  # off every topic
    return rows, centers, rng


@pytest.fixture
def filled():
    """An in-memory ledger with the blobs recorded; also the topic of every id and the blob centres."""
    rows, centers, rng = blobs()
    ledger = GapLedger.in_memory()
    topic_of = {}
    for q, t, e in rows:
        topic_of[ledger.record(q, confidence=0.2, reason="no expert matched", embedding=e)] = t
    yield ledger, topic_of, centers, rng
    ledger.close()


def zero_mean(rng):
    """Background embeddings whose mean is exactly zero, so a matcher's centring shifts nothing."""
    half = rng.normal(size=(25, DIM))
    return np.concatenate([half, -half])


def ids_of(topic_of, topic):
    return sorted(i for i, t in topic_of.items() if t == topic)


# -- the ledger -------------------------------------------------------------------------------------------
def test_records_survive_reopening_with_every_field(tmp_path):
    path = tmp_path / "ws" / "gaps.sqlite"
    emb = np.arange(DIM, dtype=np.float32) / 7
    with GapLedger(path) as ledger:
        a = ledger.record("Who founded Zorblax?", confidence=0.125, best_expert="people", best_score=0.25,
                          reason="base confidence 0.12 < 0.50; best expert people (0.25)", embedding=emb)  # fmt: skip
        b = ledger.record("What is a qubit?")
        assert ledger.journal_mode == "wal"
        assert ledger.pragma("synchronous") == 2  # FULL
    assert ledger.closed and path.exists()
    with GapLedger(path) as again:
        first, second = again.entries()
        assert [first.id, second.id] == [a, b] and len(again) == 2 == again.count()
        assert (first.query, first.confidence, first.best_expert, first.best_score) == (
            "Who founded Zorblax?", 0.125, "people", 0.25)  # fmt: skip
        assert first.embedding.dtype == np.float32 and np.array_equal(first.embedding, emb)
        assert second.embedding is None and second.confidence is None and second.best_expert is None
        assert again.dim == DIM and abs(first.created - time.time()) < 60
        d = first.to_dict()
        assert d["created"].endswith("+00:00") and d["created_ts"] == first.created and d["embedding_dim"] == DIM
        assert "embedding" not in d and len(first.to_dict(include_embedding=True)["embedding"]) == DIM
        json.dumps(d)
        assert {"schema_version", "gaps"} <= set(sqlalchemy.inspect(again.engine).get_table_names())
        assert again.backend == "sqlite" and again.where == str(path)


def test_sigkill_right_after_record_keeps_the_record_and_the_file_openable(tmp_path):
    path = tmp_path / "gaps.sqlite"
    child = textwrap.dedent(f"""
        import os, signal, numpy as np
        from adaptive_moe.gaps import GapLedger
        ledger = GapLedger({str(path)!r})
        for i in range(5):
            ledger.record(f"question {{i}}", confidence=0.1, embedding=np.full(4, i, dtype=np.float32))
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint: the records live in the WAL only
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    with GapLedger(path) as ledger:
        got = ledger.entries()
        assert [e.query for e in got] == [f"question {i}" for i in range(5)]
        assert got[-1].embedding.tolist() == [4.0] * 4
        assert ledger.pragma("integrity_check") == "ok"
        ledger.record("after the crash")
        assert len(ledger) == 6


def test_retention_by_count_keeps_the_newest():
    with GapLedger.in_memory(max_entries=3) as ledger:
        ids = [ledger.record(f"q{i}", created=1000.0 + i) for i in range(5)]
        assert [e.id for e in ledger.entries()] == ids[2:]
        assert ledger.count() == 3


def test_retention_by_age_on_record_and_prune():
    now = time.time()
    with GapLedger.in_memory(max_entries=None, max_age_days=1) as ledger:
        ledger.record("too old", created=now - 2 * 86400)  # dropped by its own record's retention
        assert ledger.count() == 0
        ledger.record("twelve hours", created=now - 12 * 3600)
        fresh = ledger.record("fresh")
        assert ledger.count() == 2
        assert ledger.prune(now=now + 13 * 3600) == 1  # half a day later the older one is past a day
        assert [e.id for e in ledger.entries()] == [fresh]


def test_resolve_marks_but_keeps_entries(filled):
    ledger, topic_of, _, _ = filled
    chess = ids_of(topic_of, "chess")
    assert ledger.resolve([*chess, 9999], "chess-expert") == chess  # unknown ids are skipped
    assert ledger.resolve(chess, "other") == []  # already resolved
    assert len(ledger) == len(topic_of) - len(chess) and ledger.count() == len(topic_of)
    done = ledger.entries(resolved=True)
    assert [e.id for e in done] == chess and {e.resolved_by for e in done} == {"chess-expert"}
    assert all(e.resolved and e.resolved_at is not None for e in done)
    assert all(not e.resolved for e in ledger.entries(resolved=False))
    assert len(ledger.entries(resolved=None)) == len(topic_of)
    with pytest.raises(InvalidInputError, match="invalid expert name"):
        ledger.resolve(chess, "../escape")
    assert ledger.reopen("chess-expert") == len(chess) and len(ledger) == len(topic_of)


def test_resolve_matching_by_predicate_and_by_matcher_scores(filled):
    ledger, topic_of, centers, rng = filled
    got = ledger.resolve_matching(lambda e: "tax" in e.query, "tax-expert")
    assert got == ids_of(topic_of, "tax")
    matcher = KNNMatcher(k=3)
    matcher.set_background(zero_mean(rng))
    matcher.add("volcano-expert", centers["volcano"] + rng.normal(size=(8, DIM)) * 0.3)
    got = ledger.resolve_matching(matcher.scores, "volcano-expert", min_score=0.8)
    assert got == ids_of(topic_of, "volcano")
    assert {e.resolved_by for e in ledger.entries(resolved=True)} == {"tax-expert", "volcano-expert"}


def test_entries_limit_and_since():
    with GapLedger.in_memory() as ledger:
        ids = [ledger.record(f"q{i}", created=1000.0 + i) for i in range(6)]
        assert [e.id for e in ledger.entries(limit=2)] == ids[-2:]  # the newest, oldest first
        assert [e.id for e in ledger.entries(since=1003.0)] == ids[3:]
        assert ledger.entries(limit=0) == []


def test_threads_record_concurrently(tmp_path):
    with GapLedger(tmp_path / "gaps.sqlite", max_entries=None) as ledger:
        got: list[int] = []

        def work(t):
            for i in range(25):
                got.append(ledger.record(f"thread {t} query {i}", embedding=np.full(4, t, dtype=np.float32)))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert len(set(got)) == 200 == ledger.count()
        assert sorted(e.query for e in ledger.entries()) == sorted(f"thread {t} query {i}" for t in range(8)
                                                                    for i in range(25))  # fmt: skip


def test_opening_waits_for_a_writer_of_a_ledger_still_in_rollback_mode(tmp_path):
    # SQLite refuses `PRAGMA journal_mode=WAL` at once ("database is locked", no busy wait) while another
    # connection holds a write lock in rollback mode: two processes opening a new ledger together met it
    path = tmp_path / "gaps.sqlite"
    GapLedger(path).close()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    assert other.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    other.execute("BEGIN IMMEDIATE")  # the write lock, held for 0.5 s
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
    started = time.monotonic()
    with GapLedger(path) as ledger:
        assert time.monotonic() - started >= 0.4  # it waited for the lock rather than failing
        assert ledger.journal_mode == "wal"
        ledger.record("after the wait")
        assert ledger.count() == 1
    other.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"query": "  "}, "query must be a non-empty string"),
        ({"confidence": 1.5}, r"confidence must be in \[0, 1\]"),
        ({"confidence": float("nan")}, r"confidence must be in \[0, 1\]"),
        ({"confidence": "high"}, "confidence must be a number"),
        ({"embedding": [1.0, float("nan"), 0.0, 0.0]}, "NaN or infinite"),
        ({"embedding": np.zeros((2, 4))}, "1-D vector"),
        ({"embedding": np.zeros(5)}, "embedding has 5 dimensions; the ledger's embeddings have 4"),
        ({"best_expert": "people"}, "best_expert and best_score together"),
        ({"best_expert": "people", "best_score": -0.1}, r"best_score must be in \[0, 1\]"),
    ],
)
def test_bad_records_are_rejected_and_leave_nothing(kwargs, match):
    with GapLedger.in_memory() as ledger:
        ledger.record("first", embedding=np.zeros(4))
        args = {"query": "q", **kwargs}
        with pytest.raises(InvalidInputError, match=match) as err:
            ledger.record(args.pop("query"), **args)
        assert isinstance(err.value, ValueError) and isinstance(err.value, AdaptiveMoEError)
        assert ledger.count() == 1


def test_files_that_are_not_ledgers_give_clear_errors(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(InvalidInputError, match="not a readable gap ledger"):
        GapLedger(junk)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(InvalidInputError, match="not a gap ledger"):
        GapLedger(other)
    with pytest.raises(InvalidInputError, match="is a folder"):
        GapLedger(tmp_path)
    newer = tmp_path / "newer.sqlite"
    GapLedger(newer).close()
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(InvalidInputError, match="schema version 99"):
        GapLedger(newer)
    for bad in ({"max_entries": 0}, {"max_age_days": -1}):
        with pytest.raises(InvalidInputError):
            GapLedger.in_memory(**bad)
    ledger = GapLedger.in_memory()
    ledger.close()
    with pytest.raises(InvalidInputError, match="closed"):
        ledger.record("q")


def test_record_decision_and_config(tmp_path):
    decision = RouteDecision("gap", confidence=0.3, reason="no expert", expert_scores={"a": 0.1, "b": 0.2})
    cfg = AdaptiveMoEConfig(workspace=str(tmp_path))
    assert (cfg.gaps.max_entries, cfg.gaps.max_age_days) == (10000, None)
    with GapLedger.from_config(cfg.gaps.replace(max_entries=5), cfg.workspace) as ledger:
        assert ledger.path == tmp_path / "gaps.sqlite" and ledger.max_entries == 5
        ledger.record_decision("q", decision)
        (e,) = ledger.entries()
        assert (e.confidence, e.best_expert, e.best_score, e.reason) == (0.3, "b", 0.2, "no expert")
    with pytest.raises(AdaptiveMoEError, match="max_entries"):
        GapsConfig(max_entries=0)


# -- analysis ---------------------------------------------------------------------------------------------
def test_clusters_are_exactly_the_topics(filled):
    ledger, topic_of, _, _ = filled
    report = analyze_gaps(ledger)
    assert isinstance(report, GapReport) and report.n_gaps == 20
    assert [set(c.entry_ids) for c in report.clusters] == [set(ids_of(topic_of, t)) for t in TOPICS]
    assert report.unclustered == ids_of(topic_of, None)
    for c, topic in zip(report.clusters, TOPICS, strict=True):
        assert isinstance(c, GapCluster) and c.size == 6 and not c.nearly_covered and c.nearest_expert is None
        assert c.keywords[0] == topic and len(c.keywords) <= 5
        assert c.mean_confidence == pytest.approx(0.2)
        assert len(c.representatives) == 5 and set(c.representatives) <= set(TOPICS[topic])
        assert validate_expert_name(c.suggested_name) == c.suggested_name
        assert c.suggested_name.startswith(topic) and c.suggested_name == c.suggested_name.lower()
    assert len({c.suggested_name for c in report.clusters}) == 3


def test_nearly_covered_gaps_go_to_their_expert(filled):
    ledger, topic_of, centers, rng = filled
    examples = centers["chess"] + rng.normal(size=(10, DIM)) * 0.6
    known = {"chess-gambit": ("chess questions", examples)}  # also the name the chess cluster would get
    report = analyze_gaps(ledger, known_experts=known)
    near = [c for c in report.clusters if c.nearly_covered]
    assert len(near) == 1 and near[0].entry_ids == ids_of(topic_of, "chess")
    assert near[0].nearest_expert[0] == "chess-gambit" and near[0].nearest_expert[1] > 0.8
    assert [set(c.entry_ids) for c in report.candidates] == [set(ids_of(topic_of, t)) for t in ("volcano", "tax")]
    names = [c.suggested_name for c in report.clusters]
    assert len(set(names)) == 3 and "chess-gambit" not in names
    assert all(c.nearest_expert[1] < 0.35 for c in report.candidates)

    matcher = KNNMatcher(k=3)  # the router's matcher works the same, through its scores function
    matcher.set_background(zero_mean(rng))
    matcher.add("chess", examples)
    by_matcher = analyze_gaps(ledger, known_experts=matcher.scores)
    assert [c.entry_ids for c in by_matcher.clusters if c.nearly_covered] == [ids_of(topic_of, "chess")]
    assert "grow chess" in str(by_matcher)


def test_small_groups_and_max_clusters_go_to_unclustered(filled):
    ledger, topic_of, _, _ = filled
    ledger.resolve(ids_of(topic_of, "tax")[2:], "tax")  # two tax gaps remain open: too few
    report = analyze_gaps(ledger, min_cluster_size=3)
    assert [c.entry_ids for c in report.clusters] == [ids_of(topic_of, "volcano"), ids_of(topic_of, "chess")]
    assert report.unclustered == sorted(ids_of(topic_of, "tax")[:2] + ids_of(topic_of, None))
    capped = analyze_gaps(ledger, max_clusters=1)
    assert [c.entry_ids for c in capped.clusters] == [ids_of(topic_of, "volcano")]
    assert len(capped.unclustered) == capped.n_gaps - 6


def test_analysis_is_deterministic_and_order_free(filled):
    ledger, _, _, _ = filled
    entries = ledger.entries()
    first = analyze_gaps(ledger).to_dict()
    shuffled = [entries[i] for i in np.random.default_rng(3).permutation(len(entries))]
    assert analyze_gaps(shuffled).to_dict() == first == analyze_gaps(ledger).to_dict()


def test_sampled_clustering_assigns_the_rest(filled, monkeypatch):
    ledger, topic_of, _, _ = filled
    monkeypatch.setattr(analysis_module, "_MAX_POINTS", 12)  # cluster 12 of the 20, assign the other 8
    report = analyze_gaps(ledger, seed=1)
    assert [set(c.entry_ids) for c in report.clusters] == [set(ids_of(topic_of, t)) for t in TOPICS]
    assert report.unclustered == ids_of(topic_of, None)


def test_background_centring_separates_a_shared_offset():
    rows, _, _ = blobs()
    offset = np.full(DIM, 60.0)  # every embedding points roughly the same way, as hidden states do
    entries = [GapEntry(i, q, 1000.0 + i, embedding=(e + offset).astype(np.float32))
               for i, (q, _, e) in enumerate(rows, 1)]  # fmt: skip
    assert len(analyze_gaps(entries).clusters) == 1  # uncentred, everything looks alike
    centred = analyze_gaps(entries, background=np.tile(offset, (4, 1)))
    assert [c.size for c in centred.clusters] == [6, 6, 6] and centred.settings["centred"]


def test_entries_without_embeddings_use_embed():
    rows, _, _ = blobs()
    table = {q: e for q, _, e in rows}
    entries = [GapEntry(i, q, 1000.0 + i) for i, (q, _, _) in enumerate(rows, 1)]
    with pytest.raises(InvalidInputError, match="20 of 20 gaps have no embedding; pass embed="):
        analyze_gaps(entries)
    report = analyze_gaps(entries, embed=lambda texts: np.stack([table[t] for t in texts]))
    assert [c.size for c in report.clusters] == [6, 6, 6]
    with pytest.raises(InvalidInputError, match="embed gave 1 embeddings for 20 queries"):
        analyze_gaps(entries, embed=lambda texts: np.zeros((1, DIM)))


def test_empty_ledger_gives_an_empty_report(tmp_path):
    with GapLedger.in_memory() as ledger:
        report = analyze_gaps(ledger)
    assert (report.clusters, report.unclustered, report.n_gaps) == ([], [], 0)
    assert "0 open gaps" in str(report)
    paths = report.write(tmp_path / "out")
    assert [p.name for p in paths] == ["gaps.json", "gaps.md"]
    assert json.loads(paths[0].read_text()) == report.to_dict()


def test_report_text_markdown_and_files(filled, tmp_path):
    ledger, _, _, _ = filled
    report = analyze_gaps(ledger)
    text = str(report)
    assert text.splitlines()[0] == "20 open gaps: 3 candidate domains, 0 groups nearly covered by existing " \
                                   "experts, 2 unclustered"  # fmt: skip
    assert all(c.suggested_name in text for c in report.clusters)
    json_path, md_path = report.write(tmp_path)
    assert json.loads(json_path.read_text()) == json.loads(report.to_json())
    md = md_path.read_text()
    assert md.startswith("# Knowledge gaps") and "| 0 | `volcano" in md and TOPICS["chess"][0] in md
    assert not list(tmp_path.glob(".*.tmp"))


def test_bad_analysis_arguments():
    with pytest.raises(InvalidInputError, match="min_cluster_size"):
        analyze_gaps([], min_cluster_size=0)
    with pytest.raises(InvalidInputError, match="nearly_covered"):
        analyze_gaps([], nearly_covered=2)
    with pytest.raises(InvalidInputError, match="GapEntry"):
        analyze_gaps(["a query"])
    with pytest.raises(InvalidInputError, match="different dimensions"):
        analyze_gaps([GapEntry(1, "a", 0.0, embedding=np.ones(3)), GapEntry(2, "b", 0.0, embedding=np.ones(4))])


def test_a_request_id_is_recorded_once(tmp_path):
    ledger = GapLedger(tmp_path / "g.sqlite")
    first = ledger.record("Who founded Kovane?", confidence=0.2, request_id="req-1")
    again = ledger.record("Who founded Kovane?", confidence=0.2, request_id="req-1")  # a retried request
    other = ledger.record("Who founded Kovane?", confidence=0.2, request_id="req-2")
    plain = [ledger.record("Who founded Kovane?") for _ in range(2)]  # no id: every call is a record
    assert first == again and len({first, other, *plain}) == 4 and ledger.count() == 4
    with pytest.raises(InvalidInputError, match="request_id"):
        ledger.record("q", request_id="")


def test_a_version_1_ledger_is_migrated_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE schema_version (version INTEGER NOT NULL, application TEXT NOT NULL);"
        "INSERT INTO schema_version VALUES (1, 'adaptive_moe gap ledger');"
        "CREATE TABLE gaps (id INTEGER PRIMARY KEY AUTOINCREMENT, query TEXT NOT NULL, created REAL NOT NULL,"
        " confidence REAL, best_expert TEXT, best_score REAL, reason TEXT NOT NULL DEFAULT '', dim INTEGER,"
        " embedding BLOB, resolved_by TEXT, resolved_at REAL);"
        "INSERT INTO gaps (query, created) VALUES ('an old gap', 1.0);"
    )
    conn.commit()
    conn.close()
    ledger = GapLedger(path)
    assert [e.query for e in ledger.entries()] == ["an old gap"]
    assert ledger.record("new", request_id="r") == ledger.record("new", request_id="r")
    ledger.close()
    version = sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone()[0]
    assert version == 2 and GapLedger(path).count() == 2
