"""The SQLite log of runs and results, and the embedding cache.

One `Store` wraps one database file through sqlite-utils. WAL mode and a
busy timeout let two processes (two SSH sessions, a CLI run beside the TUI)
write to one file at once. Every method commits before it returns, so a run
that is killed keeps every result that was written.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils
from sqlite_utils.migrations import Migrations

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
RUN_STATUSES = ("running", "completed", "failed", "cancelled", "interrupted")

migrations = Migrations("wordorder")


@migrations(name="create_runs_results_embeddings")
def _create_tables(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        {
            "id": int,
            "comparison": str,
            "started_at": str,
            "finished_at": str,
            "status": str,
            "pair_set": str,
            "pair_set_path": str,
            "pair_set_hash": str,
            "model": str,
            "provider": str,
            "settings": str,
            "fingerprint": str,
            "versions": str,
            "timings": str,
            "error": str,
            "host": str,
            "pid": int,
        },
        pk="id",
        not_null={"started_at", "status", "pair_set", "model", "settings"},
    )
    db["runs"].create_index(["started_at"])

    db["results"].create(
        {
            "id": int,
            "run_id": int,
            "position": int,
            "pair_id": str,
            "category": str,
            "a": str,
            "b": str,
            "cosine": float,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
        not_null={"run_id", "pair_id", "a", "b", "cosine"},
    )
    db["results"].create_index(["run_id", "pair_id"], unique=True)

    db["embeddings"].create(
        {
            "fingerprint": str,
            "text_hash": str,
            "dimensions": int,
            "vector": bytes,
            "created_at": str,
        },
        pk=("fingerprint", "text_hash"),
        not_null={"dimensions", "vector"},
    )


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def text_hash(text: str) -> str:
    """Return the cache key of one exact text: SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def vector_to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def blob_to_vector(blob: bytes, dimensions: int) -> np.ndarray:
    vector = np.frombuffer(blob, dtype="<f4")
    if vector.size != dimensions:
        raise ValueError(f"cached vector has {vector.size} values, expected {dimensions}")
    return vector.astype(np.float32)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """Runs, results and cached embeddings in one SQLite file.

    Methods may be called from worker threads: one lock serialises use of the
    connection, and SQLite's own locking arbitrates between processes.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        self.db = sqlite_utils.Database(connection)
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._enable_wal()
        # In WAL mode, NORMAL skips the fsync per commit but still survives a crash of this
        # process. Only a power loss or an OS crash can lose the last commits.
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("PRAGMA foreign_keys = ON")
        self._lock = threading.RLock()

        with self._lock:
            self._apply_migrations()

    def _enable_wal(self) -> None:
        """Switch the file to WAL mode, waiting while another process has it locked.

        Changing the journal mode needs an exclusive lock, and SQLite returns
        "database is locked" at once, without the busy timeout, while another
        process opening the same new file has the lock.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self.db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                log.debug("waiting to switch %s to WAL mode: %s", self.path, error)
                time.sleep(0.02)

    def _apply_migrations(self) -> None:
        """Apply pending migrations while holding SQLite's write lock.

        Two processes that open a new file at once both find the migrations
        pending. Without the lock the second one fails with "database is
        locked" (its read snapshot is stale when it tries to write) or "table
        already exists". BEGIN IMMEDIATE waits for the write lock through the
        busy timeout, and `Migrations.apply` reads the pending list again under it.
        """
        if not migrations.pending(self.db):
            return

        with self._write_transaction():
            migrations.apply(self.db)

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """Run the block in one transaction that holds the write lock from its start.

        A deferred BEGIN followed by a read (sqlite-utils reads the schema
        before it inserts) fails at once with "database is locked" when another
        process commits in between, because SQLite cannot wait for a stale
        snapshot. BEGIN IMMEDIATE waits for the lock through the busy timeout.
        """
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.rollback()
            raise
        self.db.commit()

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # Embedding cache

    def get_embeddings(self, fingerprint: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Return the cached vectors of those texts that have one, keyed by text."""
        by_hash = {text_hash(text): text for text in texts}
        found: dict[str, np.ndarray] = {}
        hashes = list(by_hash)

        with self._lock:
            # SQLite limits the number of bound parameters, so look up in chunks.
            for start in range(0, len(hashes), 500):
                chunk = hashes[start : start + 500]
                placeholders = ",".join("?" * len(chunk))
                rows = self.db.execute(
                    f"SELECT text_hash, dimensions, vector FROM embeddings "
                    f"WHERE fingerprint = ? AND text_hash IN ({placeholders})",
                    [fingerprint, *chunk],
                ).fetchall()
                for hash_, dimensions, blob in rows:
                    found[by_hash[hash_]] = blob_to_vector(blob, dimensions)
        return found

    def put_embeddings(self, fingerprint: str, texts: Sequence[str], matrix: np.ndarray) -> None:
        """Cache one vector per text; an existing entry for the same key is kept."""
        if len(texts) != len(matrix):
            raise ValueError(f"{len(texts)} texts but {len(matrix)} vectors")

        now = utc_now()
        rows = [
            (fingerprint, text_hash(text), int(vector.shape[0]), vector_to_blob(vector), now)
            for text, vector in zip(texts, matrix)
        ]
        # Plain executemany: this runs once per batch of every run, and sqlite-utils' insert_all
        # spends more time building its statements than SQLite spends writing.
        with self._lock, self._write_transaction():
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO embeddings (fingerprint, text_hash, dimensions, vector, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def count_embeddings(self, fingerprint: str | None = None) -> int:
        with self._lock:
            if fingerprint is None:
                return self.db["embeddings"].count
            return self.db["embeddings"].count_where("fingerprint = ?", [fingerprint])

    # Runs and results

    def start_run(
        self,
        *,
        comparison: str,
        pair_set: str,
        pair_set_path: str,
        pair_set_hash: str,
        model: str,
        provider: str,
        settings: dict[str, Any],
        fingerprint: str,
        versions: dict[str, str],
    ) -> int:
        """Insert a run with status "running" and return its id."""
        row = {
            "comparison": comparison,
            "started_at": utc_now(),
            "status": "running",
            "pair_set": pair_set,
            "pair_set_path": pair_set_path,
            "pair_set_hash": pair_set_hash,
            "model": model,
            "provider": provider,
            "settings": json.dumps(settings, ensure_ascii=False, sort_keys=True),
            "fingerprint": fingerprint,
            "versions": json.dumps(versions, sort_keys=True),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        with self._lock, self._write_transaction():
            return self.db["runs"].insert(row).last_pk

    def add_results(self, run_id: int, rows: Iterable[dict[str, Any]]) -> None:
        """Insert result rows ({position, pair_id, category, a, b, cosine}) of one run."""
        records = []
        for row in rows:
            cosine = float(row["cosine"])
            if not np.isfinite(cosine):
                raise ValueError(f"cosine of pair {row['pair_id']!r} is not finite: {cosine}")
            records.append({**row, "run_id": run_id, "cosine": cosine})

        # sqlite-utils commits every 100 rows, so a batch that fails part-way
        # would otherwise leave its first rows behind.
        with self._lock, self._write_transaction():
            self.db["results"].insert_all(records)

    def finish_run(
        self,
        run_id: int,
        status: str,
        *,
        error: str | None = None,
        timings: dict[str, float] | None = None,
    ) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}; expected one of {RUN_STATUSES}")

        update: dict[str, Any] = {"status": status, "finished_at": utc_now(), "error": error}
        if timings is not None:
            update["timings"] = json.dumps(timings, sort_keys=True)
        with self._lock, self._write_transaction():
            self.db["runs"].update(run_id, update)

    def recover_interrupted(self) -> int:
        """Mark runs of dead processes on this host whose status is still "running" as interrupted.

        Returns how many runs were marked. Runs of live processes, and of other
        hosts sharing the file, are left alone.
        """
        host = socket.gethostname()
        marked = 0
        with self._lock:
            rows = list(self.db["runs"].rows_where("status = 'running' AND host = ?", [host]))
            for row in rows:
                # NOTE: a live process that reused a dead run's pid keeps that run "running".
                if row["pid"] == os.getpid() or _process_alive(row["pid"]):
                    continue
                self.db["runs"].update(
                    row["id"],
                    {"status": "interrupted", "error": "the process stopped before the run finished"},
                )
                marked += 1
        if marked:
            log.info("marked %d runs of stopped processes as interrupted", marked)
        return marked

    def runs(self, limit: int = 500) -> list[dict[str, Any]]:
        """Return the newest runs first, each with its result count."""
        with self._lock:
            cursor = self.db.execute(
                "SELECT runs.*, (SELECT count(*) FROM results WHERE results.run_id = runs.id) AS result_count "
                "FROM runs ORDER BY runs.id DESC LIMIT ?",
                [limit],
            )
            columns = [column[0] for column in cursor.description]
            rows = cursor.fetchall()
        return [_decode_run(dict(zip(columns, row))) for row in rows]

    def run(self, run_id: int) -> dict[str, Any] | None:
        with self._lock:
            rows = list(self.db["runs"].rows_where("id = ?", [run_id]))
        return _decode_run(rows[0]) if rows else None

    def comparison_runs(self, run_id: int) -> list[dict[str, Any]]:
        """Return the run and every other run started with it in one comparison, oldest first."""
        with self._lock:
            rows = list(
                self.db["runs"].rows_where(
                    "comparison = (SELECT comparison FROM runs WHERE id = ?)", [run_id], order_by="id"
                )
            )
        return [_decode_run(row) for row in rows]

    def results(self, run_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db["results"].rows_where("run_id = ?", [run_id], order_by="position"))


def _decode_run(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("settings", "versions", "timings"):
        if row.get(key):
            row[key] = json.loads(row[key])
    return row
