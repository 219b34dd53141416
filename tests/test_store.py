"""Tests of the SQLite store on real files, with real processes for crashes and concurrent writers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import wordorder_tui
from wordorder_tui.store import BUSY_TIMEOUT_MS, Store, migrations, text_hash

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "helpers" / "store_worker.py"
PACKAGE_PARENT = Path(wordorder_tui.__file__).resolve().parent.parent
PROCESS_TIMEOUT_S = 60

RUN_FIELDS = {
    "comparison": "order",
    "pair_set": "basic",
    "pair_set_path": "pairs/basic.toml",
    "pair_set_hash": "f" * 64,
    "model": "minilm",
    "provider": "sentence-transformers",
    "settings": {"batch_size": 8, "prefix": "query: "},
    "fingerprint": "minilm@1",
    "versions": {"sentence-transformers": "3.0"},
}

NFC_CAFE = unicodedata.normalize("NFC", "café au lait")
NFD_CAFE = unicodedata.normalize("NFD", "café au lait")
CACHE_TEXTS = [
    "the cat chased the dog",
    "猫が犬を追いかけた",
    "犬が\u3000猫を追いかけた",
    "\u3000",
    NFC_CAFE,
    NFD_CAFE,
    "",
]


def result_row(position: int, cosine: float = 0.5, pair_id: str | None = None) -> dict[str, object]:
    return {
        "position": position,
        "pair_id": pair_id or f"pair-{position}",
        "category": "swap",
        "a": f"text a {position}",
        "b": f"text b {position}",
        "cosine": cosine,
    }


def worker_command(*args: str) -> list[str]:
    return [sys.executable, str(WORKER), *args]


def worker_env() -> dict[str, str]:
    """Return an environment in which workers import the same `wordorder_tui` as this test."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), env.get("PYTHONPATH")]))
    return env


def start_worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        worker_command(*args),
        cwd=REPO_ROOT,
        env=worker_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def raw_query(path: Path, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read the file through a plain sqlite3 connection, independent of `Store`."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql, parameters).fetchall()
    finally:
        connection.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "wordorder.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    opened = Store(db_path)
    yield opened
    opened.close()


# Migrations and connection settings


def test_migrations_create_tables(store: Store, db_path: Path) -> None:
    tables = {name for (name,) in raw_query(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}

    assert {"runs", "results", "embeddings", "_sqlite_migrations"} <= tables


def test_migrations_record_name(store: Store, db_path: Path) -> None:
    applied = raw_query(db_path, "SELECT migration_set, name FROM _sqlite_migrations")

    assert applied == [("wordorder", "create_runs_results_embeddings")]


def test_migrations_reopen_applies_nothing(store: Store, db_path: Path) -> None:
    before = raw_query(db_path, "SELECT id, migration_set, name, applied_at FROM _sqlite_migrations")

    Store(db_path).close()
    again = Store(db_path)
    pending = migrations.pending(again.db)
    again.close()
    after = raw_query(db_path, "SELECT id, migration_set, name, applied_at FROM _sqlite_migrations")

    assert pending == []
    assert after == before


def test_migrations_create_parent_folder(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "folder" / "wordorder.db"

    Store(path).close()

    assert path.is_file()


def test_store_journal_mode_wal(store: Store, db_path: Path) -> None:
    assert raw_query(db_path, "PRAGMA journal_mode") == [("wal",)]


def test_store_busy_timeout(store: Store) -> None:
    assert store.db.execute("PRAGMA busy_timeout").fetchone() == (BUSY_TIMEOUT_MS,)


def test_store_foreign_keys_enforced(store: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        store.add_results(999, [result_row(0)])


# Embedding cache


def test_embeddings_round_trip_byte_exact(db_path: Path) -> None:
    rng = np.random.default_rng(11)
    matrix = rng.normal(size=(len(CACHE_TEXTS), 16)).astype("<f4")
    # Values whose bits a lossy path would change: negative zero, a subnormal, extremes.
    matrix[0, :4] = np.array([-0.0, 1e-45, 3.4028235e38, -1.1754944e-38], dtype="<f4")

    writer = Store(db_path)
    writer.put_embeddings("minilm@1", CACHE_TEXTS, matrix)
    writer.close()
    reader = Store(db_path)
    cached = reader.get_embeddings("minilm@1", CACHE_TEXTS)
    count = reader.count_embeddings("minilm@1")
    reader.close()

    assert sorted(cached) == sorted(CACHE_TEXTS)
    assert count == len(CACHE_TEXTS)
    for text, vector in zip(CACHE_TEXTS, matrix):
        assert cached[text].dtype == np.float32, text
        assert cached[text].astype("<f4").tobytes() == vector.tobytes(), text


def test_embeddings_nfc_nfd_separate_keys(store: Store) -> None:
    nfc_vector = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    nfd_vector = np.array([[0.0, 1.0, 0.0]], dtype=np.float32)

    store.put_embeddings("minilm@1", [NFC_CAFE], nfc_vector)
    only_nfc = store.get_embeddings("minilm@1", [NFD_CAFE])
    store.put_embeddings("minilm@1", [NFD_CAFE], nfd_vector)
    cached = store.get_embeddings("minilm@1", [NFC_CAFE, NFD_CAFE])

    assert NFC_CAFE != NFD_CAFE
    assert text_hash(NFC_CAFE) != text_hash(NFD_CAFE)
    assert only_nfc == {}
    assert cached[NFC_CAFE].tobytes() == nfc_vector[0].tobytes()
    assert cached[NFD_CAFE].tobytes() == nfd_vector[0].tobytes()


def test_embeddings_ideographic_space_distinct(store: Store) -> None:
    texts = ["猫 犬", "猫\u3000犬"]
    matrix = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)

    store.put_embeddings("minilm@1", texts, matrix)
    cached = store.get_embeddings("minilm@1", texts)

    assert store.count_embeddings() == 2
    assert cached["猫 犬"].tobytes() == matrix[0].tobytes()
    assert cached["猫\u3000犬"].tobytes() == matrix[1].tobytes()


def test_embeddings_existing_entry_kept(store: Store) -> None:
    first = np.array([[0.25, -0.5]], dtype=np.float32)
    second = np.array([[9.0, 9.0]], dtype=np.float32)

    store.put_embeddings("minilm@1", ["the cat sat"], first)
    store.put_embeddings("minilm@1", ["the cat sat"], second)
    cached = store.get_embeddings("minilm@1", ["the cat sat"])

    assert cached["the cat sat"].tobytes() == first[0].tobytes()
    assert store.count_embeddings("minilm@1") == 1


def test_embeddings_keyed_by_fingerprint(store: Store) -> None:
    store.put_embeddings("minilm@1", ["the cat sat"], np.ones((1, 3), dtype=np.float32))

    other = store.get_embeddings("e5-small@1", ["the cat sat"])

    assert other == {}
    assert store.count_embeddings("e5-small@1") == 0


def test_embeddings_float64_stored_as_float32(store: Store) -> None:
    matrix = np.array([[0.1, 1 / 3]], dtype=np.float64)

    store.put_embeddings("minilm@1", ["a"], matrix)
    cached = store.get_embeddings("minilm@1", ["a"])

    assert cached["a"].tobytes() == matrix[0].astype("<f4").tobytes()


def test_embeddings_many_texts_chunked(store: Store) -> None:
    # More texts than one query binds, so the lookup runs in several chunks.
    texts = [f"sentence number {index}" for index in range(1203)]
    matrix = np.arange(len(texts) * 2, dtype=np.float32).reshape(-1, 2)

    store.put_embeddings("minilm@1", texts, matrix)
    cached = store.get_embeddings("minilm@1", [*texts, "never cached"])

    assert len(cached) == len(texts)
    assert cached["sentence number 1202"].tobytes() == matrix[1202].tobytes()
    assert "never cached" not in cached


def test_embeddings_length_mismatch(store: Store) -> None:
    with pytest.raises(ValueError, match="2 texts but 1 vectors"):
        store.put_embeddings("minilm@1", ["a", "b"], np.ones((1, 3), dtype=np.float32))


# Runs and results


def test_run_start_and_finish(store: Store) -> None:
    run_id = store.start_run(**RUN_FIELDS)
    store.add_results(run_id, [result_row(1, 0.25), result_row(0, -0.75)])
    store.finish_run(run_id, "completed", timings={"embed": 1.5})

    run = store.run(run_id)
    results = store.results(run_id)

    assert run is not None
    assert run["status"] == "completed"
    assert run["finished_at"] is not None
    assert run["settings"] == RUN_FIELDS["settings"]
    assert run["timings"] == {"embed": 1.5}
    assert run["pid"] == os.getpid()
    assert [row["position"] for row in results] == [0, 1]
    assert [row["cosine"] for row in results] == [-0.75, 0.25]


def test_runs_newest_first_with_counts(store: Store) -> None:
    older = store.start_run(**RUN_FIELDS)
    newer = store.start_run(**RUN_FIELDS)
    store.add_results(older, [result_row(0), result_row(1), result_row(2)])

    runs = store.runs()

    assert [run["id"] for run in runs] == [newer, older]
    assert [run["result_count"] for run in runs] == [0, 3]
    assert runs[0]["versions"] == RUN_FIELDS["versions"]


def test_run_unknown_id(store: Store) -> None:
    assert store.run(12345) is None


@pytest.mark.parametrize("cosine", [float("nan"), float("inf"), float("-inf"), np.float32("nan")])
def test_add_results_rejects_non_finite(store: Store, db_path: Path, cosine: float) -> None:
    run_id = store.start_run(**RUN_FIELDS)

    with pytest.raises(ValueError) as caught:
        store.add_results(run_id, [result_row(0, 0.5), result_row(1, cosine, pair_id="broken-pair")])

    stored = raw_query(db_path, "SELECT count(*) FROM results")
    assert "'broken-pair'" in str(caught.value)
    assert "not finite" in str(caught.value)
    assert store.results(run_id) == []
    assert stored == [(0,)]


def test_add_results_batch_all_or_nothing(store: Store) -> None:
    run_id = store.start_run(**RUN_FIELDS)
    rows = [result_row(position) for position in range(150)]
    # The last row repeats a pair id, which the unique index on (run_id, pair_id) rejects.
    rows.append(result_row(150, pair_id="pair-0"))

    with pytest.raises(sqlite3.IntegrityError):
        store.add_results(run_id, rows)

    assert store.results(run_id) == []


def test_add_results_store_usable_after_error(store: Store) -> None:
    run_id = store.start_run(**RUN_FIELDS)
    with pytest.raises(sqlite3.IntegrityError):
        store.add_results(run_id, [result_row(0), result_row(1, pair_id="pair-0")])

    store.add_results(run_id, [result_row(0)])

    assert len(store.results(run_id)) == 1


def test_finish_run_unknown_status(store: Store) -> None:
    run_id = store.start_run(**RUN_FIELDS)

    with pytest.raises(ValueError) as caught:
        store.finish_run(run_id, "done")

    run = store.run(run_id)
    assert "'done'" in str(caught.value)
    assert run is not None
    assert run["status"] == "running"
    assert run["finished_at"] is None


# Interrupted runs


def finished_pid() -> int:
    """Return the id of a process that has exited and been reaped."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(child.stdout)


@pytest.mark.parametrize("ending", ["sigkill", "os_exit"])
def test_recover_interrupted_dead_process(db_path: Path, ending: str) -> None:
    worker = start_worker("hold", str(db_path))
    try:
        run_id = int(worker.stdout.readline())
        if ending == "sigkill":
            worker.send_signal(signal.SIGKILL)
            worker.communicate(timeout=PROCESS_TIMEOUT_S)
        else:
            worker.communicate("exit\n", timeout=PROCESS_TIMEOUT_S)
    finally:
        worker.kill()
        worker.wait(timeout=PROCESS_TIMEOUT_S)
    expected_code = -signal.SIGKILL if ending == "sigkill" else 3

    store = Store(db_path)
    marked = store.recover_interrupted()
    run = store.run(run_id)
    results = store.results(run_id)
    marked_again = store.recover_interrupted()
    store.close()

    assert worker.returncode == expected_code
    assert marked == 1
    assert run is not None
    assert run["status"] == "interrupted"
    assert "stopped" in run["error"]
    assert [row["pair_id"] for row in results] == ["pair-0", "pair-1"]
    assert marked_again == 0


def test_recover_interrupted_live_process(db_path: Path) -> None:
    worker = start_worker("hold", str(db_path))
    try:
        run_id = int(worker.stdout.readline())

        store = Store(db_path)
        marked = store.recover_interrupted()
        run = store.run(run_id)
        store.close()
    finally:
        worker.kill()
        worker.wait(timeout=PROCESS_TIMEOUT_S)

    assert marked == 0
    assert run is not None
    assert run["status"] == "running"


def test_recover_interrupted_own_process(store: Store) -> None:
    run_id = store.start_run(**RUN_FIELDS)

    marked = store.recover_interrupted()
    run = store.run(run_id)

    assert marked == 0
    assert run is not None
    assert run["status"] == "running"


def test_recover_interrupted_other_host(store: Store) -> None:
    run_id = store.start_run(**RUN_FIELDS)
    store.db["runs"].update(run_id, {"host": "another-host.invalid", "pid": finished_pid()})

    marked = store.recover_interrupted()
    run = store.run(run_id)

    assert marked == 0
    assert run is not None
    assert run["status"] == "running"


def test_recover_interrupted_keeps_finished(store: Store) -> None:
    run_id = store.start_run(**RUN_FIELDS)
    store.finish_run(run_id, "failed", error="model not found")
    store.db["runs"].update(run_id, {"pid": finished_pid()})

    marked = store.recover_interrupted()
    run = store.run(run_id)

    assert marked == 0
    assert run is not None
    assert run["status"] == "failed"


# Concurrent writers


def release_writers(path: Path, names: list[str], runs: int, results: int) -> list[tuple[int, str]]:
    """Start one writer per name, release them together, and return (exit code, stderr) of each."""
    workers = [start_worker("write", str(path), name, str(runs), str(results)) for name in names]
    try:
        # Each worker prints "ready" and then blocks on stdin: that is the start barrier.
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=PROCESS_TIMEOUT_S) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(timeout=PROCESS_TIMEOUT_S)
    return [(worker.returncode, stderr) for worker, (_, stderr) in zip(workers, outputs)]


@pytest.mark.parametrize("attempt", range(4))
def test_new_file_opened_at_once(tmp_path: Path, attempt: int) -> None:
    path = tmp_path / f"new-{attempt}.db"
    names = [f"opener-{index}" for index in range(4)]

    outcomes = release_writers(path, names, runs=1, results=1)

    for returncode, stderr in outcomes:
        assert "database is locked" not in stderr
        assert "already exists" not in stderr
        assert returncode == 0, stderr
    assert raw_query(path, "SELECT count(*) FROM runs") == [(len(names),)]
    assert raw_query(path, "SELECT count(*) FROM _sqlite_migrations") == [(1,)]


def test_two_processes_write_at_once(db_path: Path) -> None:
    runs_per_worker = 50
    results_per_run = 20
    names = ["writer-one", "writer-two"]
    # The file does not exist yet, so both workers also race to create the schema.
    outcomes = release_writers(db_path, names, runs_per_worker, results_per_run)

    for returncode, stderr in outcomes:
        assert "database is locked" not in stderr
        assert returncode == 0, stderr

    store = Store(db_path)
    runs = list(reversed(store.runs(limit=1000)))
    results = {run["id"]: store.results(run["id"]) for run in runs}
    store.close()

    assert len(runs) == len(names) * runs_per_worker
    for name in names:
        own_runs = [run for run in runs if run["pair_set"] == name]
        assert len(own_runs) == runs_per_worker, name
        for run_index, run in enumerate(own_runs):
            expected = [(run_index * 1000 + position) / 1_000_000 for position in range(results_per_run)]
            assert run["status"] == "completed", run
            assert run["result_count"] == results_per_run, run
            assert [row["cosine"] for row in results[run["id"]]] == expected, run


def test_store_synchronous_normal(tmp_path):
    store = Store(tmp_path / "sync.db")

    (mode,) = store.db.execute("PRAGMA synchronous").fetchone()

    assert mode == 1  # NORMAL
    store.close()
