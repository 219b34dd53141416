"""The provider interface that every embedding backend implements.

A provider turns a batch of texts into an (n, d) float32 matrix. Batching
across a whole run, the embedding cache and cancellation live in
`wordorder_tui.service`, so a provider only has to embed one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np


class EmbeddingError(Exception):
    """A failure to embed, with a short title and a one-line detail for the user."""

    def __init__(self, title: str, detail: str) -> None:
        super().__init__(f"{title}: {detail}")
        self.title = title
        self.detail = detail

    def __reduce__(self) -> tuple:
        # Errors cross from the model process to this one by pickling; keep both fields.
        return (self.__class__, (self.title, self.detail))


class ModelNotAvailable(EmbeddingError):
    """The model cannot be loaded here: missing package, missing files, or offline."""


@dataclass(frozen=True)
class Readiness:
    """Whether a model can be used now, and if not, why and how to fix it."""

    ready: bool
    reason: str = ""


# The concurrency slot held by the batch running in this task. A provider that sleeps before
# a retry gives it up meanwhile (see `released_slot`), so waiting batches do not idle the limit.
CURRENT_SLOT: ContextVar[asyncio.Semaphore | None] = ContextVar("wordorder_current_slot", default=None)


@contextlib.asynccontextmanager
async def released_slot() -> AsyncIterator[None]:
    """Give up this task's concurrency slot for the duration of the block, then take it back.

    The limit bounds requests in flight; a batch sleeping out a Retry-After has none.
    """
    slot = CURRENT_SLOT.get()
    if slot is None:
        yield
        return

    slot.release()
    try:
        yield
    finally:
        # Shielded so that a cancel arriving now cannot leave the slot released twice.
        await asyncio.shield(slot.acquire())


def settings_fingerprint(settings: dict[str, Any]) -> str:
    """Return a SHA-256 hex digest of the settings as canonical JSON.

    Two providers with the same fingerprint must produce the same vector for
    the same text, because the embedding cache is keyed on it.
    """
    canonical = json.dumps(settings, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Provider(ABC):
    """One configured embedding model.

    Subclasses set `name` (the registry name users type, such as "minilm"),
    `kind` (the backend, such as "sentence-transformers") and `batch_size`.
    `max_concurrency` is how many `embed` calls the service may make at once.
    `retries` counts requests that were sent again after a failure, for progress.
    """

    name: str
    kind: str
    batch_size: int = 32
    max_concurrency: int = 1
    # Texts per `embed` call, when it differs from the model's batch size (None: the same).
    request_size: int | None = None
    retries: int = 0

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Return every setting that changes the vectors, without secrets.

        This dict is stored with each run and hashed into the cache key.
        """

    def fingerprint(self) -> str:
        return settings_fingerprint(self.settings())

    def prepare(self, text: str) -> str:
        """Return the exact text that is sent to the model (prefix or prompt included)."""
        return text

    def readiness(self) -> Readiness:
        """Report whether the model can run here without loading it."""
        return Readiness(True)

    def versions(self) -> dict[str, str]:
        """Return library and model versions to store with a run."""
        return {}

    async def load(self) -> None:
        """Load weights or open connections ahead of the first batch; the default does nothing.

        The service awaits this before embedding, so progress can show "loading".
        """

    @abstractmethod
    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed already prepared texts and return an (n, d) float32 matrix.

        Blocking model code must run off the event loop (`asyncio.to_thread`).
        Raises `EmbeddingError` with a title and detail the user can act on.
        """

    async def aclose(self) -> None:
        """Release connections or model memory; the default does nothing."""
