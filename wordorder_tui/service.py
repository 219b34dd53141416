"""The embedding service: one async entry point over every provider.

It removes duplicate texts, serves cached vectors from memory or the store, splits the
rest into batches of the provider's size, runs up to `max_concurrency`
batches at once, checks every batch and caches it as soon as it arrives.
Cancelling the awaiting task stops it between batches; batches that already
finished stay cached.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from wordorder_tui.core import VectorError, check_vectors
from wordorder_tui.providers.base import CURRENT_SLOT, EmbeddingError, Provider
from wordorder_tui.store import Store

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """A snapshot of one model's work, sent to the caller's progress callback."""

    model: str
    phase: str  # "cache", "loading", "embedding" or "done"
    done: int = 0
    total: int = 0
    cached: int = 0
    in_flight: int = 0
    retries: int = 0


ProgressCallback = Callable[[Progress], None]
BatchCallback = Callable[[Sequence[str], np.ndarray], Awaitable[None] | None]


def check_batch(provider: Provider, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
    """Return the batch as float32 after checking its shape and values, or raise EmbeddingError."""
    matrix = np.asarray(vectors)
    if matrix.ndim != 2 or matrix.shape[0] != len(texts):
        raise EmbeddingError(
            "Invalid response",
            f"{provider.name} returned {matrix.shape[0] if matrix.ndim else 0} vectors for {len(texts)} texts",
        )
    try:
        check_vectors(matrix, texts)
    except VectorError as error:
        raise EmbeddingError("Invalid embedding", f"{provider.name}: {error}") from error
    return matrix.astype(np.float32, copy=False)


# Vectors kept in memory across runs of one service, so that repeating a run reads no
# SQLite at all; 256 MiB is about 65,000 vectors of 1,024 float32 values.
DEFAULT_MEMORY_BYTES = 256 * 1024 * 1024


class MemoryCache:
    """A least-recently-used map of (settings fingerprint, text) to vector, bounded in bytes.

    Entries are grouped by fingerprint, so that a lookup hashes only the text; eviction
    takes the oldest entries of the least recently used fingerprint first.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self._groups: OrderedDict[str, OrderedDict[str, np.ndarray]] = OrderedDict()

    def get_many(self, fingerprint: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        group = self._groups.get(fingerprint)
        if not group:
            return {}

        self._groups.move_to_end(fingerprint)
        found = {}
        touch = group.move_to_end
        for text in texts:
            vector = group.get(text)
            if vector is not None:
                touch(text)
                found[text] = vector
        return found

    def put_many(self, fingerprint: str, vectors: dict[str, np.ndarray]) -> None:
        group = self._groups.setdefault(fingerprint, OrderedDict())
        self._groups.move_to_end(fingerprint)
        for text, vector in vectors.items():
            if text not in group:
                group[text] = vector
                self.used_bytes += vector.nbytes

        while self.used_bytes > self.max_bytes and self._groups:
            oldest_fingerprint, oldest = next(iter(self._groups.items()))
            _, evicted = oldest.popitem(last=False)
            self.used_bytes -= evicted.nbytes
            if not oldest:
                del self._groups[oldest_fingerprint]


class EmbeddingService:
    """Embeds texts through providers, with caching, batching and concurrency limits."""

    def __init__(self, store: Store | None = None, *, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        self.store = store
        self.memory = MemoryCache(memory_bytes)
        self._limits: dict[object, asyncio.Semaphore] = {}

    async def _cached(self, fingerprint: str, texts: list[str]) -> dict[str, np.ndarray]:
        """Return the vectors of texts found in memory, then in the store, keyed by text."""
        found = self.memory.get_many(fingerprint, texts)
        rest = [text for text in texts if text not in found]
        if rest and self.store is not None:
            from_store = await asyncio.to_thread(self.store.get_embeddings, fingerprint, rest)
            self.memory.put_many(fingerprint, from_store)
            found.update(from_store)
        return found

    def _limit(self, provider: Provider) -> asyncio.Semaphore:
        # One semaphore per endpoint. Remote providers expose `limit_key` (their base URL), so
        # models served by one server share its limit. Other providers get one per object.
        key = getattr(provider, "limit_key", id(provider))
        if key not in self._limits:
            self._limits[key] = asyncio.Semaphore(max(1, provider.max_concurrency))
        return self._limits[key]

    async def embed(
        self,
        provider: Provider,
        texts: Sequence[str],
        *,
        on_progress: ProgressCallback | None = None,
        on_batch: BatchCallback | None = None,
    ) -> np.ndarray:
        """Return one vector per text, in order, for texts already passed through `provider.prepare`.

        `on_batch(texts, vectors)` is called for the cached vectors first and
        then for each new batch as it arrives, so callers can write results
        before the whole run finishes.
        """
        unique = list(dict.fromkeys(texts))
        progress = Progress(model=provider.name, phase="cache", total=len(unique))
        retries_before = provider.retries
        callback = on_progress or (lambda _: None)

        def report(snapshot: Progress) -> None:
            # Retries of this call only, because `provider.retries` counts since the provider was created.
            snapshot.retries = provider.retries - retries_before
            callback(snapshot)

        report(progress)

        fingerprint = provider.fingerprint()
        vectors = await self._cached(fingerprint, unique)
        progress.cached = progress.done = len(vectors)

        if vectors and on_batch is not None:
            cached_texts = list(vectors)
            await _call(on_batch, cached_texts, np.stack([vectors[text] for text in cached_texts]))

        missing = [text for text in unique if text not in vectors]
        if missing:
            progress.phase = "loading"
            report(progress)
            await provider.load()

            progress.phase = "embedding"
            report(progress)
            limit = self._limit(provider)

            async def embed_batch(batch: list[str]) -> None:
                async with limit:
                    token = CURRENT_SLOT.set(limit)
                    progress.in_flight += 1
                    report(progress)
                    try:
                        matrix = check_batch(provider, batch, await provider.embed(batch))
                    finally:
                        progress.in_flight -= 1
                        CURRENT_SLOT.reset(token)

                if self.store is not None:
                    await asyncio.to_thread(self.store.put_embeddings, fingerprint, batch, matrix)
                fresh = dict(zip(batch, matrix))
                self.memory.put_many(fingerprint, fresh)
                vectors.update(fresh)
                progress.done += len(batch)
                report(progress)
                if on_batch is not None:
                    await _call(on_batch, batch, matrix)

            # Texts of similar length in one batch need less padding, and order does not
            # matter because vectors are kept by text.
            missing.sort(key=len)
            size = max(1, provider.request_size or provider.batch_size)
            try:
                async with asyncio.TaskGroup() as group:
                    for start in range(0, len(missing), size):
                        group.create_task(embed_batch(missing[start : start + size]))
            except* Exception as group:
                # TaskGroup wraps failures in an ExceptionGroup; callers catch the error of the first
                # failed batch (an EmbeddingError, as a rule). The group cancelled the other batches.
                raise group.exceptions[0] from None

        progress.phase = "done"
        report(progress)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)

        try:
            return np.stack([vectors[text] for text in texts])
        except ValueError as error:
            # np.stack requires one shape; only a mixed cache or a changing model breaks that.
            dimensions = sorted({vector.shape[0] for vector in vectors.values()})
            raise EmbeddingError(
                "Inconsistent dimensions",
                f"{provider.name} returned vectors of sizes {dimensions}; "
                "clear its cache entries if the model changed under the same settings",
            ) from error


async def _call(callback: BatchCallback, texts: Sequence[str], matrix: np.ndarray) -> None:
    result = callback(texts, matrix)
    if inspect.isawaitable(result):
        await result
