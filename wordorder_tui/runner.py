"""Run pair sets through models and log every run in the store.

The CLI and the TUI both call `run_comparison`. Each (pair set, model) pair
becomes one run. Runs proceed concurrently, a failing model marks only its
own runs failed, and each result is written as soon as both of its vectors
exist, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wordorder_tui.core import VectorError, cosine_pairs
from wordorder_tui.pairs import PairSet
from wordorder_tui.providers.base import EmbeddingError, Provider
from wordorder_tui.service import EmbeddingService, ProgressCallback
from wordorder_tui.store import Store

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    """The outcome of one (pair set, model) run; `results` follow the pair order of the file."""

    run_id: int
    model: str
    pair_set: str
    status: str
    settings: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)
    error_title: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """Return the documented JSON shape of one run."""
        return {
            "run_id": self.run_id,
            "model": self.model,
            "pair_set": self.pair_set,
            "status": self.status,
            "settings": self.settings,
            "error": self.error,
            "results": [
                {key: row[key] for key in ("pair_id", "category", "a", "b", "cosine")} for row in self.results
            ],
        }


ResultCallback = Callable[[RunOutcome, dict[str, Any]], None]


async def run_one(
    service: EmbeddingService,
    store: Store,
    pair_set: PairSet,
    provider: Provider,
    *,
    comparison: str,
    on_progress: ProgressCallback | None = None,
    on_result: ResultCallback | None = None,
    cancel_status: str = "cancelled",
) -> RunOutcome:
    """Embed and score one pair set with one model, writing results as they are computed."""
    settings = provider.settings()
    run_id = await asyncio.to_thread(
        store.start_run,
        comparison=comparison,
        pair_set=pair_set.name,
        pair_set_path=str(pair_set.path or ""),
        pair_set_hash=pair_set.content_hash(),
        model=provider.name,
        provider=provider.kind,
        settings=settings,
        fingerprint=provider.fingerprint(),
        versions=provider.versions(),
    )
    outcome = RunOutcome(run_id, provider.name, pair_set.name, "running", settings)

    prepared = [(provider.prepare(pair.a), provider.prepare(pair.b)) for pair in pair_set.pairs]
    vectors: dict[str, np.ndarray] = {}
    written: set[int] = set()
    started = time.perf_counter()

    async def write_ready_pairs(texts: Sequence[str], matrix: np.ndarray) -> None:
        vectors.update(zip(texts, matrix))
        ready = [
            index
            for index, (a, b) in enumerate(prepared)
            if index not in written and a in vectors and b in vectors
        ]
        if not ready:
            return

        left = np.stack([vectors[prepared[index][0]] for index in ready])
        right = np.stack([vectors[prepared[index][1]] for index in ready])
        try:
            cosines = cosine_pairs(
                left,
                right,
                [prepared[index][0] for index in ready],
                [prepared[index][1] for index in ready],
            )
        except VectorError as error:
            raise EmbeddingError("Invalid embedding", f"{provider.name}: {error}") from error

        rows = []
        for index, cosine in zip(ready, cosines):
            pair = pair_set.pairs[index]
            rows.append(
                {
                    "position": index,
                    "pair_id": pair.id,
                    "category": pair.category,
                    "a": prepared[index][0],
                    "b": prepared[index][1],
                    "cosine": float(cosine),
                }
            )
        # Claim the pairs before the await: another batch may finish while this one is written,
        # and it must not write the same pairs again.
        written.update(ready)
        try:
            await asyncio.to_thread(store.add_results, run_id, rows)
        except BaseException:
            written.difference_update(ready)
            raise
        outcome.results.extend(rows)
        if on_result is not None:
            for row in rows:
                on_result(outcome, row)

    texts = [text for pair in prepared for text in pair]
    try:
        await service.embed(provider, texts, on_progress=on_progress, on_batch=write_ready_pairs)
    except asyncio.CancelledError:
        outcome.status = cancel_status
        store.finish_run(run_id, cancel_status, timings=_timings(started, outcome))
        raise
    except EmbeddingError as error:
        log.warning("run %d of %s on %s failed: %s", run_id, provider.name, pair_set.name, error)
        outcome.status = "failed"
        outcome.error_title, outcome.error = error.title, error.detail
        await asyncio.to_thread(
            store.finish_run, run_id, "failed", error=str(error), timings=_timings(started, outcome)
        )
    except Exception as error:
        # An unexpected failure in one model (a library bug, out of memory) must not stop the others.
        log.exception("run %d of %s on %s failed unexpectedly", run_id, provider.name, pair_set.name)
        outcome.status = "failed"
        outcome.error_title, outcome.error = "Model failed", f"{provider.name}: {type(error).__name__}: {error}"
        await asyncio.to_thread(
            store.finish_run, run_id, "failed", error=outcome.error, timings=_timings(started, outcome)
        )
    else:
        outcome.status = "completed"
        await asyncio.to_thread(store.finish_run, run_id, "completed", timings=_timings(started, outcome))

    outcome.results.sort(key=lambda row: row["position"])
    return outcome


def _timings(started: float, outcome: RunOutcome) -> dict[str, float]:
    return {"seconds": round(time.perf_counter() - started, 4), "results": len(outcome.results)}


async def run_comparison(
    pair_sets: Sequence[PairSet],
    providers: Sequence[Provider],
    store: Store,
    *,
    service: EmbeddingService | None = None,
    on_progress: ProgressCallback | None = None,
    on_result: ResultCallback | None = None,
    cancel_status: str = "cancelled",
) -> list[RunOutcome]:
    """Run every pair set through every model concurrently; return outcomes in (set, model) order."""
    service = service or EmbeddingService(store)
    comparison = uuid.uuid4().hex
    tasks = [
        run_one(
            service,
            store,
            pair_set,
            provider,
            comparison=comparison,
            on_progress=on_progress,
            on_result=on_result,
            cancel_status=cancel_status,
        )
        for pair_set in pair_sets
        for provider in providers
    ]
    return list(await asyncio.gather(*tasks))
