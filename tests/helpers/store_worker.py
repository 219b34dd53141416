"""Drive a `Store` from a separate process for the store tests.

Usage:
    store_worker.py hold DB              start a run, add two results, print the run id, wait
    store_worker.py write DB NAME RUNS RESULTS
                                         print "ready", wait for a line on stdin, then write
                                         RUNS runs of RESULTS results each, one transaction per call

In "hold" mode the process waits for a line on stdin and then leaves with
`os._exit(3)` without finishing the run, or is killed by the test before that.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from wordorder_tui.store import Store

RUN_FIELDS = {
    "comparison": "order",
    "pair_set_path": "pairs/test.toml",
    "pair_set_hash": "0" * 64,
    "provider": "test",
    "settings": {"batch_size": 8},
    "fingerprint": "test-fingerprint",
    "versions": {"wordorder": "test"},
}


def result_rows(run_index: int, count: int) -> list[dict[str, object]]:
    """Build `count` result rows whose cosines encode the run and the position."""
    return [
        {
            "position": position,
            "pair_id": f"pair-{position}",
            "category": "swap",
            "a": f"run {run_index} text a {position}",
            "b": f"run {run_index} text b {position}",
            "cosine": (run_index * 1000 + position) / 1_000_000,
        }
        for position in range(count)
    ]


def hold(path: Path) -> None:
    store = Store(path)
    run_id = store.start_run(pair_set="held", model="held-model", **RUN_FIELDS)
    store.add_results(run_id, result_rows(0, 1))
    store.add_results(run_id, result_rows(0, 2)[1:])
    print(run_id, flush=True)

    # Leave like a crash: no finish_run, no close, no atexit handlers.
    sys.stdin.readline()
    os._exit(3)


def write(path: Path, name: str, runs: int, results: int) -> None:
    print("ready", flush=True)
    sys.stdin.readline()

    # The store is opened after the barrier, so both processes may also race
    # to create the schema of a new file.
    store = Store(path)
    for run_index in range(runs):
        run_id = store.start_run(pair_set=name, model=f"{name}-model", **RUN_FIELDS)
        for row in result_rows(run_index, results):
            store.add_results(run_id, [row])
        store.finish_run(run_id, "completed", timings={"total": 0.0})
    store.close()


def main(argv: list[str]) -> None:
    mode, path = argv[0], Path(argv[1])
    if mode == "hold":
        hold(path)
    elif mode == "write":
        write(path, argv[2], int(argv[3]), int(argv[4]))
    else:
        raise SystemExit(f"unknown mode {mode!r}; expected 'hold' or 'write'")


if __name__ == "__main__":
    main(sys.argv[1:])
