"""A child process that loads sentence-transformers models and encodes batches.

Importing torch and building a model hold the GIL for a second or more at a
time, which froze the TUI when done in a thread. One spawned child process,
shared by every local model of this process, does that work instead, so the
event loop keeps drawing. The child keeps each loaded model for reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from wordorder_tui.providers.base import EmbeddingError, ModelNotAvailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    """The location and load options of one model; the child caches models by this key."""

    path_or_id: str
    local_files_only: bool
    device: str
    trust_remote_code: bool
    display_name: str


# Models loaded in the child process, by source.
_loaded: dict[ModelSource, Any] = {}


@contextlib.contextmanager
def _real_std_streams() -> Iterator[None]:
    """Restore the process's own stdout and stderr while the child process starts.

    Textual replaces them with objects that have no file descriptor, and
    multiprocessing passes the stderr descriptor to its helper process.
    """
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def _silence_child() -> None:
    # Ctrl-C in the CLI reaches the whole process group; the parent decides what to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The child shares the terminal with the TUI; anything it printed would tear the screen.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    # Spinning OpenMP threads slowed encoding 3 to 7 times on a busy 2-core machine (measured
    # here under load). Passive waiting costs nothing on an idle one.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _get_model(source: ModelSource) -> Any:
    if source in _loaded:
        return _loaded[source]

    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    try:
        model = SentenceTransformer(
            source.path_or_id,
            device=source.device,
            local_files_only=source.local_files_only,
            trust_remote_code=source.trust_remote_code,
        )
    except (OSError, ValueError) as error:
        reason = str(error).rstrip(". ")
        if os.path.isdir(source.path_or_id):
            hint = "check that the folder holds a saved sentence-transformers or Hugging Face model"
        else:
            hint = "check the model id, or use a cached model or a local folder"
        raise ModelNotAvailable("Model could not be loaded", f"{source.display_name}: {reason}; {hint}") from None
    _loaded[source] = model
    return model


def load_in_child(source: ModelSource) -> dict[str, str]:
    """Load the model in the child and return its configured prompts."""
    return dict(_get_model(source).prompts)


def encode_in_child(source: ModelSource, texts: list[str], batch_size: int, normalize: bool) -> np.ndarray:
    vectors = _get_model(source).encode(
        texts,
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=normalize,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)


class ModelHost:
    """The shared child process; it starts on first use and restarts after a crash."""

    _executor: ProcessPoolExecutor | None = None
    _lock = threading.Lock()

    @classmethod
    def _get_executor(cls) -> ProcessPoolExecutor:
        """Return the executor, starting its child process now if there is none (blocks ~0.5 s)."""
        with cls._lock:
            if cls._executor is None:
                # spawn, not fork: forking a process that runs Textual or an event loop is unsafe.
                context = multiprocessing.get_context("spawn")
                with _real_std_streams():
                    executor = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_silence_child)
                    executor.submit(os.getpid).result()
                cls._executor = executor
            return cls._executor

    @classmethod
    def _reset(cls) -> None:
        with cls._lock:
            if cls._executor is not None:
                cls._executor.shutdown(wait=False, cancel_futures=True)
            cls._executor = None

    @classmethod
    async def call(cls, function: Any, *args: Any) -> Any:
        """Run `function(*args)` in the child; a crashed child becomes an EmbeddingError."""
        loop = asyncio.get_running_loop()
        try:
            executor = await asyncio.to_thread(cls._get_executor)
            return await loop.run_in_executor(executor, function, *args)
        except BrokenProcessPool as error:
            log.error("the model process stopped unexpectedly: %s", error)
            cls._reset()
            raise EmbeddingError(
                "Model process stopped",
                "the process running local models exited (out of memory?); run again to restart it",
            ) from error

    @classmethod
    def shutdown(cls) -> None:
        cls._reset()


async def load(source: ModelSource) -> dict[str, str]:
    return await ModelHost.call(load_in_child, source)


async def encode(source: ModelSource, texts: Sequence[str], batch_size: int, normalize: bool) -> np.ndarray:
    return await ModelHost.call(encode_in_child, source, list(texts), batch_size, normalize)
