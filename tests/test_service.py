"""The embedding service: deduplication, the memory and SQLite caches, batching and checks.

The provider here is a small deterministic one written for these tests, because
the service's own logic is what is under test. The real providers have their own
tests against real models and servers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from wordorder_tui.providers.base import EmbeddingError, Provider
from wordorder_tui.service import EmbeddingService, MemoryCache
from wordorder_tui.store import Store


class CountingProvider(Provider):
    kind = "test"

    def __init__(self, name: str = "counting", batch_size: int = 4, dimensions: int = 8) -> None:
        self.name = name
        self.batch_size = batch_size
        self.dimensions = dimensions
        self.batches: list[list[str]] = []
        self.zero_for: set[str] = set()

    def settings(self) -> dict:
        return {"provider": self.kind, "dimensions": self.dimensions}

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            vector = np.random.default_rng(seed).normal(size=self.dimensions)
            rows.append(np.zeros(self.dimensions) if text in self.zero_for else vector)
        return np.array(rows, dtype=np.float32)


TEXTS = [f"text {index}" for index in range(10)]


async def test_service_dedupes_and_batches():
    provider = CountingProvider()

    matrix = await EmbeddingService().embed(provider, [*TEXTS, *TEXTS[:3]])

    assert matrix.shape == (13, 8)
    assert [len(batch) for batch in provider.batches] == [4, 4, 2]
    assert sorted(text for batch in provider.batches for text in batch) == sorted(TEXTS)
    assert np.array_equal(matrix[10], matrix[0])


async def test_service_memory_cache_skips_provider():
    provider = CountingProvider()
    service = EmbeddingService()

    first = await service.embed(provider, TEXTS)
    calls = len(provider.batches)
    second = await service.embed(provider, TEXTS)

    assert len(provider.batches) == calls
    assert np.array_equal(first, second)


async def test_service_store_cache_across_services(tmp_path: Path):
    store = Store(tmp_path / "cache.db")
    provider = CountingProvider()

    first = await EmbeddingService(store).embed(provider, TEXTS)
    calls = len(provider.batches)
    second = await EmbeddingService(store).embed(provider, TEXTS)

    assert len(provider.batches) == calls
    assert first.tobytes() == second.tobytes()
    store.close()


async def test_service_settings_change_misses_cache():
    service = EmbeddingService()
    await service.embed(CountingProvider(dimensions=8), TEXTS)
    other = CountingProvider(dimensions=16)

    matrix = await service.embed(other, TEXTS)

    assert matrix.shape == (10, 16)
    assert len(other.batches) == 3


async def test_service_rejects_zero_vector_and_caches_nothing(tmp_path: Path):
    store = Store(tmp_path / "cache.db")
    provider = CountingProvider(batch_size=10)
    provider.zero_for = {"text 4"}

    with pytest.raises(EmbeddingError) as raised:
        await EmbeddingService(store).embed(provider, TEXTS)

    assert "text 4" in raised.value.detail
    assert store.count_embeddings() == 0
    store.close()


def test_memory_cache_evicts_least_recent():
    vector = np.ones(4, dtype=np.float32)  # 16 bytes
    cache = MemoryCache(max_bytes=48)
    cache.put_many("f", {"a": vector, "b": vector, "c": vector})
    cache.get_many("f", ["a"])

    cache.put_many("f", {"d": vector})

    assert set(cache.get_many("f", ["a", "b", "c", "d"])) == {"a", "c", "d"}
    assert cache.used_bytes == 48


async def test_released_slot_lets_others_run():
    import asyncio

    from wordorder_tui.providers.base import CURRENT_SLOT, released_slot

    limit = asyncio.Semaphore(1)
    order: list[str] = []

    async def retrying() -> None:
        async with limit:
            CURRENT_SLOT.set(limit)
            order.append("first request")
            async with released_slot():
                await asyncio.sleep(0.05)
            order.append("retry")

    async def other() -> None:
        await asyncio.sleep(0.01)
        async with limit:
            order.append("other request")

    await asyncio.gather(retrying(), other())

    assert order == ["first request", "other request", "retry"]
    assert not limit.locked()


def test_memory_cache_evicts_oldest_fingerprint_first():
    vector = np.ones(4, dtype=np.float32)  # 16 bytes
    cache = MemoryCache(max_bytes=48)
    cache.put_many("old", {"a": vector, "b": vector})
    cache.put_many("new", {"c": vector})
    cache.get_many("new", ["c"])

    cache.put_many("new", {"d": vector})

    assert set(cache.get_many("old", ["a", "b"])) == {"b"}
    assert set(cache.get_many("new", ["c", "d"])) == {"c", "d"}
    assert cache.used_bytes == 48


async def test_service_caches_batches_before_a_failure(tmp_path: Path):
    store = Store(tmp_path / "cache.db")
    provider = CountingProvider(batch_size=2)
    provider.zero_for = {"text 9"}  # the last batch by length order fails

    with pytest.raises(EmbeddingError):
        await EmbeddingService(store).embed(provider, TEXTS)

    # Every batch that arrived before the failure is in the store.
    cached = store.get_embeddings(provider.fingerprint(), TEXTS)
    assert len(cached) >= 2
    assert "text 9" not in cached
    store.close()


async def test_service_caches_large_run(tmp_path: Path):
    store = Store(tmp_path / "cache.db")
    provider = CountingProvider(batch_size=64)
    texts = [f"sentence {index}" for index in range(2000)]

    await EmbeddingService(store).embed(provider, texts)

    assert store.count_embeddings() == 2000
    store.close()
