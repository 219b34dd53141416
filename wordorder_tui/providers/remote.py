"""Remote embedding providers: one class per wire protocol, all on `providers.http`.

Every provider sends only the options set in its `ModelConfig` (checked by
`config.check_options`), reads its API key from the environment variable
named by `api_key_env` at request time, and checks every response before the
service receives it. `FACTORIES` maps each provider kind to its class; the
registry merges it into its own table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import numpy as np

from wordorder_tui.config import MAX_BATCH_SIZE, ConfigError, ModelConfig, check_options
from wordorder_tui.i18n import t
from wordorder_tui.providers.base import Provider, Readiness
from wordorder_tui.providers.http import (
    DEFAULT_CONCURRENCY,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_READ_TIMEOUT,
    AuthenticationFailed,
    Caller,
    Endpoint,
    InvalidModelConfig,
    RetryPolicy,
    check_vectors,
    decode_base64_vector,
    float_vector,
    invalid_response,
    sorted_by_index,
)


class RemoteProvider(Provider):
    """A model behind an HTTP API; subclasses build the request body and read the response.

    `limit_key` is the base URL, so the service shares one concurrency limit
    between models served by the same endpoint. `retries` counts every retry
    since the provider was created.
    """

    default_base_url = ""
    default_key_env: str | None = None
    default_batch_size = 32
    # Option that sets the output size, if the protocol has one.
    dimensions_option: str | None = None
    # Option and value that request base64 vectors instead of JSON numbers.
    base64_option: tuple[str, str] | None = None

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.name = config.name
        self.kind = config.provider
        self.model = config.model
        self.base_url = (config.base_url or self.default_base_url).rstrip("/")
        self.options = dict(config.options)
        self.key_env = self.resolve_key_env(config)
        self.retries = 0

        maximum = MAX_BATCH_SIZE.get(self.kind)
        self.batch_size = config.batch_size or maximum or self.default_batch_size
        if maximum is not None:
            self.batch_size = min(self.batch_size, maximum)
        self.max_concurrency = config.concurrency or DEFAULT_CONCURRENCY

        self.endpoint = Endpoint(
            self.base_url,
            headers=config.headers,
            connect_timeout=config.connect_timeout or DEFAULT_CONNECT_TIMEOUT,
            read_timeout=config.read_timeout or DEFAULT_READ_TIMEOUT,
            retry=RetryPolicy(max_retries=DEFAULT_MAX_RETRIES if config.max_retries is None else config.max_retries),
            requests_per_minute=config.requests_per_minute,
            max_connections=self.max_concurrency,
            on_retry=self._count_retry,
        )
        self._served: dict[str, str] = {}

    def resolve_key_env(self, config: ModelConfig) -> str | None:
        """Return the environment variable that must hold the key, or None when no key is sent."""
        return config.api_key_env or self.default_key_env

    @property
    def limit_key(self) -> str:
        return self.base_url

    def _count_retry(self) -> None:
        self.retries += 1

    # Provider interface

    def settings(self) -> dict[str, Any]:
        return {"provider": self.kind, "model": self.model, "base_url": self.base_url, "options": dict(self.options)}

    def readiness(self) -> Readiness:
        try:
            check_options(self.config)
        except ConfigError as error:
            return Readiness(False, str(error))
        if self.key_env and not os.environ.get(self.key_env):
            return Readiness(False, t("models.missing_key", variable=self.key_env, provider=self.kind))
        return Readiness(True)

    def versions(self) -> dict[str, str]:
        return {"httpx": httpx.__version__, **self._served}

    async def load(self) -> None:
        """Check the options and the key before the first request; sends nothing by default."""
        try:
            check_options(self.config)
        except ConfigError as error:
            raise InvalidModelConfig("Invalid model configuration", str(error)) from error
        self.api_key()

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        caller = self.caller()
        body = await self.endpoint.request_json(
            "POST", self.path(), caller, body=self.request_body(list(texts)), headers=self.auth_headers()
        )
        vectors = self.read_vectors(body, len(texts), caller)
        return check_vectors(vectors, len(texts), self.requested_dimensions(), caller)

    async def aclose(self) -> None:
        await self.endpoint.aclose()

    # Helpers for subclasses

    def api_key(self) -> str | None:
        """Return the key from the environment, or raise AuthenticationFailed naming the variable."""
        if not self.key_env:
            return None
        key = os.environ.get(self.key_env)
        if not key:
            raise AuthenticationFailed(
                "API key missing",
                f"{self.kind} model {self.model}: the environment variable {self.key_env} is not set; "
                "export it with your API key",
                provider=self.kind,
                model=self.model,
            )
        return key

    def caller(self) -> Caller:
        return Caller(self.kind, self.model, self.key_env, os.environ.get(self.key_env) if self.key_env else None)

    def auth_headers(self) -> dict[str, str]:
        key = self.api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def requested_dimensions(self) -> int | None:
        if self.dimensions_option is None:
            return None
        return self.options.get(self.dimensions_option)

    def wants_base64(self) -> bool:
        if self.base64_option is None:
            return False
        name, value = self.base64_option
        return self.options.get(name) == value

    def path(self) -> str:
        raise NotImplementedError

    def request_body(self, texts: list[str]) -> Any:
        raise NotImplementedError

    def read_vectors(self, body: Any, count: int, caller: Caller) -> list[np.ndarray]:
        raise NotImplementedError

    def field(self, body: Any, name: str, caller: Caller) -> Any:
        """Return a top-level field of a JSON object response, or raise InvalidResponse."""
        if not isinstance(body, dict) or name not in body:
            raise invalid_response(caller, f"expected a JSON object with the field {name!r}")
        return body[name]

    def indexed_vectors(self, body: Any, count: int, caller: Caller) -> list[np.ndarray]:
        """Read an OpenAI-style `data` list of {"index", "embedding"} in input order."""
        items = sorted_by_index(self.field(body, "data", caller), count, caller)
        dimensions = self.requested_dimensions()
        vectors = []
        for position, item in enumerate(items):
            value = item.get("embedding")
            if self.wants_base64():
                vectors.append(decode_base64_vector(value, caller, position, dimensions))
            else:
                vectors.append(float_vector(value, caller, position))
        return vectors


class EmbeddingsListProvider(RemoteProvider):
    """The `POST {base_url}/embeddings` protocol that OpenAI, Jina and Voyage share.

    The body is {"model", "input": [texts], options...} and the response a
    `data` list of {"index", "embedding"} items.
    """

    def path(self) -> str:
        return "/embeddings"

    def request_body(self, texts: list[str]) -> Any:
        return {"model": self.model, "input": texts, **self.options}

    def read_vectors(self, body: Any, count: int, caller: Caller) -> list[np.ndarray]:
        return self.indexed_vectors(body, count, caller)


class JinaProvider(EmbeddingsListProvider):
    """Jina AI `POST /v1/embeddings`."""

    default_base_url = "https://api.jina.ai/v1"
    default_key_env = "JINA_API_KEY"
    # NOTE: a conservative default; Jina documents no fixed input count per request.
    default_batch_size = 128
    dimensions_option = "dimensions"
    base64_option = ("embedding_type", "base64")


class OpenAIProvider(EmbeddingsListProvider):
    """OpenAI `POST /v1/embeddings`, and any server that speaks it (vLLM, llama.cpp, Ollama's /v1)."""

    default_base_url = "https://api.openai.com/v1"
    dimensions_option = "dimensions"
    base64_option = ("encoding_format", "base64")

    def resolve_key_env(self, config: ModelConfig) -> str | None:
        # Local OpenAI-compatible servers usually take no key; only api.openai.com requires one by default.
        if config.api_key_env:
            return config.api_key_env
        base_url = (config.base_url or self.default_base_url).rstrip("/")
        return "OPENAI_API_KEY" if base_url == self.default_base_url else None


class VoyageProvider(EmbeddingsListProvider):
    """Voyage AI `POST /v1/embeddings`."""

    default_base_url = "https://api.voyageai.com/v1"
    default_key_env = "VOYAGE_API_KEY"
    dimensions_option = "output_dimension"


class OllamaProvider(RemoteProvider):
    """Ollama `POST /api/embed`; vectors come back in input order without indexes."""

    default_base_url = "http://127.0.0.1:11434"
    default_batch_size = 32
    dimensions_option = "dimensions"

    def path(self) -> str:
        return "/api/embed"

    def request_body(self, texts: list[str]) -> Any:
        return {"model": self.model, "input": texts, **self.options}

    def read_vectors(self, body: Any, count: int, caller: Caller) -> list[np.ndarray]:
        return plain_vectors(self.field(body, "embeddings", caller), count, caller)


class TEIProvider(RemoteProvider):
    """Hugging Face text-embeddings-inference `POST /embed`; `load` reads the batch limit from `GET /info`."""

    # NOTE: TEI has no standard address; 8080 is the host port its documentation maps the container to.
    default_base_url = "http://127.0.0.1:8080"
    dimensions_option = "dimensions"

    async def load(self) -> None:
        await super().load()
        info = await self.endpoint.request_json("GET", "/info", self.caller(), headers=self.auth_headers())
        if not isinstance(info, dict):
            raise invalid_response(self.caller(), "GET /info did not return a JSON object")

        limit = info.get("max_client_batch_size")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1:
            self.batch_size = min(self.config.batch_size or limit, limit)
        for key in ("model_id", "version"):
            if isinstance(info.get(key), str):
                self._served[f"tei_{key}"] = info[key]

    def path(self) -> str:
        return "/embed"

    def request_body(self, texts: list[str]) -> Any:
        return {"inputs": texts, **self.options}

    def read_vectors(self, body: Any, count: int, caller: Caller) -> list[np.ndarray]:
        return plain_vectors(body, count, caller)


class CohereProvider(RemoteProvider):
    """Cohere `POST /v2/embed`, always asking for float vectors."""

    default_base_url = "https://api.cohere.com"
    default_key_env = "COHERE_API_KEY"
    dimensions_option = "output_dimension"

    def path(self) -> str:
        return "/v2/embed"

    def request_body(self, texts: list[str]) -> Any:
        return {"model": self.model, "texts": texts, "embedding_types": ["float"], **self.options}

    def read_vectors(self, body: Any, count: int, caller: Caller) -> list[np.ndarray]:
        embeddings = self.field(body, "embeddings", caller)
        if not isinstance(embeddings, dict) or "float" not in embeddings:
            raise invalid_response(caller, "expected 'embeddings' to be an object with a 'float' list")
        return plain_vectors(embeddings["float"], count, caller)


class GeminiProvider(RemoteProvider):
    """Gemini `POST /v1beta/models/{model}:batchEmbedContents`, with the key in `x-goog-api-key`."""

    default_base_url = "https://generativelanguage.googleapis.com/v1beta"
    default_key_env = "GEMINI_API_KEY"
    dimensions_option = "outputDimensionality"

    def auth_headers(self) -> dict[str, str]:
        key = self.api_key()
        return {"x-goog-api-key": key} if key else {}

    def path(self) -> str:
        return f"/models/{self.model}:batchEmbedContents"

    def request_body(self, texts: list[str]) -> Any:
        requests = [
            {"model": f"models/{self.model}", "content": {"parts": [{"text": text}]}, **self.options} for text in texts
        ]
        return {"requests": requests}

    def read_vectors(self, body: Any, count: int, caller: Caller) -> list[np.ndarray]:
        items = self.field(body, "embeddings", caller)
        if not isinstance(items, list):
            raise invalid_response(caller, f"'embeddings' should be a list, got {type(items).__name__}")
        values = [item.get("values") if isinstance(item, dict) else None for item in items]
        return plain_vectors(values, count, caller)


def plain_vectors(items: Any, count: int, caller: Caller) -> list[np.ndarray]:
    """Read a list of float lists that is in input order (Ollama, TEI, Cohere, Gemini)."""
    if not isinstance(items, list):
        raise invalid_response(caller, f"expected a list of embeddings, got {type(items).__name__}")
    if len(items) != count:
        raise invalid_response(caller, f"{len(items)} embeddings for {count} inputs")
    return [float_vector(item, caller, position) for position, item in enumerate(items)]


FACTORIES: dict[str, Callable[[ModelConfig], Provider]] = {
    "jina": JinaProvider,
    "openai": OpenAIProvider,
    "voyage": VoyageProvider,
    "ollama": OllamaProvider,
    "tei": TEIProvider,
    "cohere": CohereProvider,
    "gemini": GeminiProvider,
}
