import os
import stat

import pytest

from adaptive_moe.utils.io import atomic_directory, atomic_write_text, memoized_sha256, sha256_file


def test_atomic_write_text_has_usual_permissions_and_leaves_no_temp(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "sub" / "f.txt"
        atomic_write_text(path, "hello")
        atomic_write_text(path, "world")
    finally:
        os.umask(old)
    assert path.read_text() == "world"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]


def test_atomic_directory_success_failure_and_race(tmp_path):
    target = tmp_path / "store"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("1")
        assert not target.exists()  # invisible until complete
    assert (target / "a").read_text() == "1"

    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "broken") as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("crash mid-write")
    assert not (tmp_path / "broken").exists()

    with atomic_directory(target, replace=False) as tmp:  # another writer got there first: keep theirs
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["a"]

    with atomic_directory(target, replace=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no temporary folders left


def test_memoized_sha256_reads_once_and_notices_changes(tmp_path, monkeypatch):
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 1000)
    memo = tmp_path / "memo.json"
    first = memoized_sha256(f, memo)
    assert first == sha256_file(f)
    calls = []
    monkeypatch.setattr("adaptive_moe.utils.io.sha256_file", lambda p: calls.append(p) or "x")
    assert memoized_sha256(f, memo) == first and calls == []
    f.write_bytes(b"b" * 1001)  # size (and mtime) change: hashed again
    assert memoized_sha256(f, memo) == "x" and len(calls) == 1


def test_memo_forgets_deleted_files(tmp_path):
    memo = tmp_path / "memo.json"
    gone = tmp_path / "gone.bin"
    gone.write_bytes(b"1")
    memoized_sha256(gone, memo)
    gone.unlink()
    kept = tmp_path / "kept.bin"
    kept.write_bytes(b"2")
    memoized_sha256(kept, memo)
    assert "gone.bin" not in memo.read_text()
    assert "kept.bin" in memo.read_text()
