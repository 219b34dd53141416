"""Tests of the remote providers over real HTTP against the protocol server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import struct
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from protocol_server import ProtocolServer, embedding_for

from wordorder_tui.config import ModelConfig
from wordorder_tui.pairs import Pair, PairSet
from wordorder_tui.providers import http
from wordorder_tui.providers.http import (
    AuthenticationFailed,
    Caller,
    ConnectionFailed,
    InvalidModelConfig,
    InvalidResponse,
    RateLimited,
    RemoteError,
    RequestRejected,
    RetryPolicy,
    ServerFailed,
    decode_base64_vector,
    parse_retry_after,
)
from wordorder_tui.providers.registry import BUILTIN_MODELS, FACTORIES
from wordorder_tui.providers.remote import RemoteProvider
from wordorder_tui.runner import run_comparison
from wordorder_tui.service import EmbeddingService, Progress
from wordorder_tui.store import Store

TEXTS = ["She flew from Paris to Tokyo.", "She drove from Tokyo to Paris.", "The cat sat on the mat."]

# provider kind -> (server flavor, base URL suffix, model, options with every option set, request path)
PROTOCOLS: dict[str, tuple[str, str, str, dict[str, Any], str]] = {
    "jina": (
        "jina",
        "/v1",
        "jina-embeddings-v3",
        {
            "task": "text-matching",
            "dimensions": 256,
            "late_chunking": False,
            "embedding_type": "base64",
            "normalized": True,
            "truncate": True,
        },
        "/v1/embeddings",
    ),
    "openai": (
        "openai",
        "/v1",
        "text-embedding-3-small",
        {"dimensions": 128, "encoding_format": "base64"},
        "/v1/embeddings",
    ),
    "voyage": (
        "voyage",
        "/v1",
        "voyage-3.5",
        {"input_type": "document", "output_dimension": 256, "truncation": True},
        "/v1/embeddings",
    ),
    "ollama": (
        "openai",
        "",
        "nomic-embed-text",
        {"truncate": True, "keep_alive": "5m", "dimensions": 64},
        "/api/embed",
    ),
    "tei": (
        "openai",
        "",
        "BAAI/bge-small-en-v1.5",
        {
            "normalize": True,
            "truncate": True,
            "truncation_direction": "Right",
            "prompt_name": "query",
            "dimensions": 128,
        },
        "/embed",
    ),
    "cohere": (
        "openai",
        "",
        "embed-v4.0",
        {"input_type": "clustering", "truncate": "END", "output_dimension": 256},
        "/v2/embed",
    ),
    "gemini": (
        "openai",
        "/v1beta",
        "gemini-embedding-001",
        {"taskType": "SEMANTIC_SIMILARITY", "outputDimensionality": 128},
        "/v1beta/models/gemini-embedding-001:batchEmbedContents",
    ),
}

# Options each protocol needs even in its smallest request.
REQUIRED = {"cohere": {"input_type": "clustering"}}

# Fields every request body of a protocol carries besides the options.
BASE_FIELDS = {
    "jina": {"model", "input"},
    "openai": {"model", "input"},
    "voyage": {"model", "input"},
    "ollama": {"model", "input"},
    "tei": {"inputs"},
    "cohere": {"model", "texts", "embedding_types"},
    "gemini": {"requests"},
}

DIMENSION_OPTIONS = {
    "jina": "dimensions",
    "openai": "dimensions",
    "voyage": "output_dimension",
    "ollama": "dimensions",
    "tei": "dimensions",
    "cohere": "output_dimension",
    "gemini": "outputDimensionality",
}

INVALID_FAULTS = ("malformed_json", "fewer_vectors", "wrong_dimension", "nan", "zero_vector", "wrong_encoding")

SECRET = "sk-test-7d1f3c9a0b5e42e8a1c6"


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink the backoff so retries without Retry-After take milliseconds."""
    monkeypatch.setattr(http, "BACKOFF_BASE_DELAY", 0.005)


@pytest.fixture(autouse=True)
def hosted_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set the key variables of the hosted services; the protocol server checks keys only when asked."""
    for variable in ("JINA_API_KEY", "COHERE_API_KEY", "VOYAGE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(variable, "test-key-0000")


@pytest.fixture
def servers() -> Iterator[Callable[..., ProtocolServer]]:
    started: list[ProtocolServer] = []

    def start(flavor: str = "openai", **options: Any) -> ProtocolServer:
        server = ProtocolServer(flavor, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
async def providers() -> AsyncIterator[list[RemoteProvider]]:
    """Collect providers made in a test and close their HTTP clients afterwards."""
    made: list[RemoteProvider] = []
    yield made
    for provider in made:
        await provider.aclose()


@pytest.fixture
def make(
    servers: Callable[..., ProtocolServer], providers: list[RemoteProvider]
) -> Callable[..., tuple[RemoteProvider, ProtocolServer]]:
    """Start a server for a protocol and return (provider, server); keyword arguments go to ModelConfig."""

    def build(
        kind: str,
        *,
        server: ProtocolServer | None = None,
        options: dict[str, Any] | None = None,
        model: str | None = None,
        server_options: dict[str, Any] | None = None,
        **fields: Any,
    ) -> tuple[RemoteProvider, ProtocolServer]:
        flavor, suffix, default_model, _, _ = PROTOCOLS[kind]
        server = server or servers(flavor, **(server_options or {}))
        config = ModelConfig(
            name=fields.pop("name", f"test-{kind}"),
            provider=kind,
            model=model or default_model,
            base_url=server.base_url + suffix,
            options=dict(REQUIRED.get(kind, {})) if options is None else options,
            **fields,
        )
        provider = FACTORIES[kind](config)
        assert isinstance(provider, RemoteProvider)
        providers.append(provider)
        return provider, server

    return build


def expected(texts: list[str], dimensions: int) -> np.ndarray:
    return np.array([embedding_for(text, dimensions) for text in texts], dtype=np.float32)


def default_dimensions(server: ProtocolServer, kind: str, model: str) -> int:
    name = server.tei_model_id if kind == "tei" else model
    return server.dimensions.get(name, server.default_dimensions)


def body_fields(kind: str, body: dict[str, Any]) -> set[str]:
    """Return the option-bearing fields of a request: the top level, or each Gemini request item."""
    if kind == "gemini":
        return set(body["requests"][0])
    return set(body)


def pair_set(name: str, texts: list[tuple[str, str]]) -> PairSet:
    pairs = [Pair(id=f"p{index}", category="order", a=a, b=b, language="en") for index, (a, b) in enumerate(texts)]
    return PairSet(path=None, name=name, language="en", description="", pairs=pairs)


PAIRS = [
    ("She flew from Paris to Tokyo.", "She drove from Tokyo to Paris."),
    ("The dog bit the man.", "The man bit the dog."),
    ("Alice paid Bob.", "Bob paid Alice."),
]


# Each protocol end to end


@pytest.mark.parametrize("kind", list(PROTOCOLS))
async def test_protocol_all_options(kind: str, make: Callable[..., Any]) -> None:
    options = PROTOCOLS[kind][3]
    provider, server = make(kind, options=dict(options))

    vectors = await EmbeddingService().embed(provider, TEXTS)

    dimensions = options[DIMENSION_OPTIONS[kind]]
    assert vectors == pytest.approx(expected(TEXTS, dimensions), abs=1e-6)
    body = server.requests[-1].json_body
    base = BASE_FIELDS[kind] if kind != "gemini" else {"model", "content"}
    assert body_fields(kind, body) == base | set(options)
    sent = body["requests"][0] if kind == "gemini" else body
    for key, value in options.items():
        assert sent[key] == value, key


@pytest.mark.parametrize("kind", list(PROTOCOLS))
async def test_protocol_unset_options_not_sent(kind: str, make: Callable[..., Any]) -> None:
    provider, server = make(kind)

    vectors = await EmbeddingService().embed(provider, TEXTS)

    dimensions = default_dimensions(server, kind, PROTOCOLS[kind][2])
    assert vectors == pytest.approx(expected(TEXTS, dimensions), abs=1e-6)
    body = server.requests[-1].json_body
    base = BASE_FIELDS[kind] if kind != "gemini" else {"model", "content"}
    assert body_fields(kind, body) == base | set(REQUIRED.get(kind, {}))


@pytest.mark.parametrize("kind", list(PROTOCOLS))
async def test_protocol_request_path(kind: str, make: Callable[..., Any]) -> None:
    provider, server = make(kind)

    await EmbeddingService().embed(provider, TEXTS)

    assert server.count(PROTOCOLS[kind][4]) == 1


async def test_cohere_asks_for_float(make: Callable[..., Any]) -> None:
    provider, server = make("cohere")

    await EmbeddingService().embed(provider, TEXTS)

    assert server.requests[-1].json_body["embedding_types"] == ["float"]


async def test_gemini_item_names_model(make: Callable[..., Any]) -> None:
    provider, server = make("gemini")

    # The provider itself, because the service reorders texts by length before batching.
    await provider.embed(TEXTS)

    items = server.requests[-1].json_body["requests"]
    assert [item["model"] for item in items] == ["models/gemini-embedding-001"] * 3
    assert [item["content"] for item in items] == [{"parts": [{"text": text}]} for text in TEXTS]


async def test_jina_builtin_request_exact(make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    builtin = next(config for config in BUILTIN_MODELS if config.name == "jina-v3")
    monkeypatch.setenv("JINA_API_KEY", SECRET)
    _, server = make("jina", server_options={"require_key": SECRET})
    provider = FACTORIES["jina"](dataclasses.replace(builtin, base_url=server.base_url + "/v1"))

    await EmbeddingService().embed(provider, TEXTS[:2])
    await provider.aclose()

    assert server.requests[-1].json_body == {
        "model": "jina-embeddings-v3",
        "input": TEXTS[:2],
        "task": "text-matching",
        "dimensions": 1024,
        "late_chunking": False,
        "embedding_type": "float",
    }


def test_builtin_hosted_not_default() -> None:
    hosted = {
        "jina-v3",
        "openai-3-small",
        "openai-3-large",
        "cohere-multilingual-v3",
        "voyage-3",
        "gemini-embedding-001",
    }
    configs = {config.name: config for config in BUILTIN_MODELS}

    assert hosted <= set(configs)
    assert not any(configs[name].default for name in hosted)


# Keys, headers, settings


async def test_bearer_key_sent(make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_EMBED_KEY", SECRET)
    provider, server = make("openai", api_key_env="TEST_EMBED_KEY", server_options={"require_key": SECRET})

    await EmbeddingService().embed(provider, TEXTS)

    assert server.requests[-1].headers["authorization"] == f"Bearer {SECRET}"


async def test_gemini_key_header(make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    provider, server = make("gemini", server_options={"require_key": SECRET})

    await EmbeddingService().embed(provider, TEXTS)

    headers = server.requests[-1].headers
    assert headers["x-goog-api-key"] == SECRET
    assert "authorization" not in headers


async def test_extra_headers_sent(make: Callable[..., Any]) -> None:
    provider, server = make("openai", headers={"X-Tenant": "lab-7"})

    await EmbeddingService().embed(provider, TEXTS)

    assert server.requests[-1].headers["x-tenant"] == "lab-7"


def test_openai_key_optional_off_default(make: Callable[..., Any]) -> None:
    provider, _ = make("openai")

    assert provider.key_env is None
    assert provider.readiness().ready


def test_openai_default_url_needs_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    provider = FACTORIES["openai"](ModelConfig(name="o", provider="openai", model="text-embedding-3-small"))

    readiness = provider.readiness()

    assert not readiness.ready
    assert "OPENAI_API_KEY" in readiness.reason


async def test_missing_key_sends_nothing(make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOYAGE_API_KEY", raising=False)
    provider, server = make("voyage", api_key_env="VOYAGE_API_KEY")

    with pytest.raises(AuthenticationFailed) as caught:
        await EmbeddingService().embed(provider, TEXTS)

    assert "VOYAGE_API_KEY" in caught.value.detail
    assert server.count() == 0


def test_settings_fields(make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_EMBED_KEY", SECRET)
    provider, server = make("jina", options={"task": "text-matching"}, api_key_env="TEST_EMBED_KEY")

    settings = provider.settings()

    assert settings == {
        "provider": "jina",
        "model": "jina-embeddings-v3",
        "base_url": server.base_url + "/v1",
        "options": {"task": "text-matching"},
    }
    assert SECRET not in json.dumps(settings)


# Batching, deduplication, cache, concurrency


async def test_batches_by_batch_size(make: Callable[..., Any]) -> None:
    provider, server = make("openai", batch_size=3)
    texts = [f"text number {index}" for index in range(7)]

    vectors = await EmbeddingService().embed(provider, texts)

    assert server.count("/v1/embeddings") == 3
    assert vectors == pytest.approx(expected(texts, 1536), abs=1e-6)


async def test_tei_batch_from_info(make: Callable[..., Any], servers: Callable[..., ProtocolServer]) -> None:
    server = servers("openai")
    server.tei_max_client_batch_size = 4
    provider, _ = make("tei", server=server)
    texts = [f"text number {index}" for index in range(10)]

    await EmbeddingService().embed(provider, texts)

    assert server.count("/info") == 1
    assert server.count("/embed") == 3
    assert provider.batch_size == 4
    assert provider.versions()["tei_model_id"] == "BAAI/bge-small-en-v1.5"


async def test_cohere_batch_limit(make: Callable[..., Any]) -> None:
    provider, server = make("cohere")
    texts = [f"text number {index}" for index in range(100)]

    await EmbeddingService().embed(provider, texts)

    sizes = [len(request.json_body["texts"]) for request in server.requests]
    assert sorted(sizes) == [4, 96]


async def test_duplicates_sent_once(make: Callable[..., Any]) -> None:
    provider, server = make("openai")
    texts = [TEXTS[0], TEXTS[1], TEXTS[0], TEXTS[1], TEXTS[0]]

    vectors = await EmbeddingService().embed(provider, texts)

    assert sorted(server.texts_seen()) == sorted(TEXTS[:2])
    assert vectors == pytest.approx(expected(texts, 1536), abs=1e-6)


async def test_cache_hits_no_request(make: Callable[..., Any], tmp_path: Path) -> None:
    provider, server = make("ollama")
    store = Store(tmp_path / "cache.db")

    await EmbeddingService(store).embed(provider, TEXTS)
    before = server.count()
    vectors = await EmbeddingService(store).embed(provider, TEXTS)

    assert before == 1
    assert server.count() == before
    assert vectors == pytest.approx(expected(TEXTS, 768), abs=1e-6)


async def test_endpoint_limit_shared(make: Callable[..., Any], servers: Callable[..., ProtocolServer]) -> None:
    server = servers("openai", latency=0.05)
    first, _ = make("openai", server=server, name="first", batch_size=1, concurrency=2)
    second, _ = make("openai", server=server, name="second", batch_size=1, concurrency=2)
    in_flight: dict[str, int] = {}
    totals: list[int] = []

    def record(progress: Progress) -> None:
        in_flight[progress.model] = progress.in_flight
        totals.append(sum(in_flight.values()))

    service = EmbeddingService()
    await asyncio.gather(
        service.embed(first, [f"first {index}" for index in range(6)], on_progress=record),
        service.embed(second, [f"second {index}" for index in range(6)], on_progress=record),
    )

    assert max(totals) == 2
    assert server.count() == 12


# Retries


async def test_429_retry_after_seconds(make: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    provider, server = make("openai")
    server.add_fault("429", retry_after=1)

    with caplog.at_level(logging.WARNING, logger=http.__name__):
        vectors = await EmbeddingService().embed(provider, TEXTS)

    assert server.count() == 2
    assert provider.retries == 1
    assert vectors == pytest.approx(expected(TEXTS, 1536), abs=1e-6)
    assert "HTTP 429; retry 1 of 5 in 1.00 s" in caplog.text
    assert "openai model text-embedding-3-small" in caplog.text


async def test_429_retry_after_date(make: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    provider, server = make("jina")
    server.add_fault("429", retry_after=1, http_date=True)

    with caplog.at_level(logging.WARNING, logger=http.__name__):
        vectors = await EmbeddingService().embed(provider, TEXTS)

    assert server.count() == 2
    assert provider.retries == 1
    assert vectors == pytest.approx(expected(TEXTS, 1024), abs=1e-6)
    assert "HTTP 429; retry 1 of 5" in caplog.text


async def test_retry_after_capped(make: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    provider, server = make("openai")
    provider.endpoint.retry = RetryPolicy(retry_after_cap=0.01)
    server.add_fault("429", retry_after=3600)

    with caplog.at_level(logging.WARNING, logger=http.__name__):
        await EmbeddingService().embed(provider, TEXTS)

    assert server.count() == 2
    assert "in 0.01 s" in caplog.text


def test_retry_after_date_parsed() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0


def test_retry_after_past_date_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


def test_retry_after_unreadable_none() -> None:
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize("kind", list(PROTOCOLS))
@pytest.mark.parametrize("fault", ["500", "503"])
async def test_server_error_retried(kind: str, fault: str, make: Callable[..., Any]) -> None:
    provider, server = make(kind)
    server.add_fault(fault, path=PROTOCOLS[kind][4], retry_after=None)

    vectors = await EmbeddingService().embed(provider, TEXTS)

    dimensions = default_dimensions(server, kind, PROTOCOLS[kind][2])
    assert vectors == pytest.approx(expected(TEXTS, dimensions), abs=1e-6)
    assert server.count(PROTOCOLS[kind][4]) == 2
    assert provider.retries == 1


@pytest.mark.parametrize("kind", list(PROTOCOLS))
async def test_server_error_message_extracted(kind: str, make: Callable[..., Any]) -> None:
    provider, server = make(kind, max_retries=0)
    server.add_fault("500", path=PROTOCOLS[kind][4])

    with pytest.raises(ServerFailed) as caught:
        await EmbeddingService().embed(provider, TEXTS)

    detail = caught.value.detail
    assert detail.startswith(f"{kind} model {PROTOCOLS[kind][2]}: HTTP 500: ")
    assert "The server had an error while processing your request." in detail
    assert "\n" not in detail


async def test_429_gives_up(make: Callable[..., Any]) -> None:
    provider, server = make("voyage", max_retries=2)
    server.add_fault("429", count=3, retry_after=None)

    with pytest.raises(RateLimited) as caught:
        await EmbeddingService().embed(provider, TEXTS)

    assert server.count() == 3
    assert caught.value.status == 429
    assert "gave up after 3 attempts" in caught.value.detail


async def test_drop_retried(make: Callable[..., Any]) -> None:
    provider, server = make("cohere")
    server.add_fault("drop")

    vectors = await EmbeddingService().embed(provider, TEXTS)

    assert server.count() == 2
    assert provider.retries == 1
    assert vectors == pytest.approx(expected(TEXTS, 1536), abs=1e-6)


async def test_slow_response_awaited(make: Callable[..., Any]) -> None:
    provider, server = make("openai")
    server.add_fault("slow", delay=0.3)

    vectors = await EmbeddingService().embed(provider, TEXTS)

    assert server.count() == 1
    assert provider.retries == 0
    assert vectors == pytest.approx(expected(TEXTS, 1536), abs=1e-6)


async def test_read_timeout_retried(make: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    provider, server = make("ollama", read_timeout=0.2)
    server.add_fault("slow", delay=1.0)

    with caplog.at_level(logging.WARNING, logger=http.__name__):
        vectors = await EmbeddingService().embed(provider, TEXTS)

    assert server.count() == 2
    assert "read timed out" in caplog.text
    assert vectors == pytest.approx(expected(TEXTS, 768), abs=1e-6)


async def test_connection_refused_fails(
    servers: Callable[..., ProtocolServer], providers: list[RemoteProvider]
) -> None:
    server = servers("openai")
    address = server.base_url
    server.stop()
    provider = FACTORIES["openai"](
        ModelConfig(name="gone", provider="openai", model="m", base_url=address + "/v1", max_retries=1)
    )
    providers.append(provider)

    with pytest.raises(ConnectionFailed) as caught:
        await EmbeddingService().embed(provider, TEXTS)

    assert provider.retries == 1
    assert "openai model m: no HTTP response: connection failed" in caught.value.detail


async def test_progress_counts_retries(make: Callable[..., Any]) -> None:
    provider, server = make("openai")
    server.add_fault("503", count=2, retry_after=None)
    snapshots: list[int] = []

    await EmbeddingService().embed(provider, TEXTS, on_progress=lambda progress: snapshots.append(progress.retries))

    assert snapshots[-1] == 2


# Invalid responses


@pytest.mark.parametrize("kind", list(PROTOCOLS))
@pytest.mark.parametrize("fault", INVALID_FAULTS)
async def test_invalid_response_rejected(kind: str, fault: str, make: Callable[..., Any], tmp_path: Path) -> None:
    provider, server = make(kind)
    server.add_fault(fault, path=PROTOCOLS[kind][4])
    store = Store(tmp_path / "cache.db")

    with pytest.raises(InvalidResponse) as caught:
        await EmbeddingService(store).embed(provider, TEXTS)

    assert caught.value.detail.startswith(f"{kind} model {PROTOCOLS[kind][2]}: HTTP 200: ")
    assert server.count(PROTOCOLS[kind][4]) == 1
    assert store.count_embeddings(provider.fingerprint()) == 0


async def test_wrong_encoding_base64_requested(make: Callable[..., Any]) -> None:
    provider, server = make("openai", options={"encoding_format": "base64"})
    server.add_fault("wrong_encoding")

    with pytest.raises(InvalidResponse) as caught:
        await EmbeddingService().embed(provider, TEXTS)

    assert "should be a base64 string" in caught.value.detail


async def test_wrong_dimension_requested_size(make: Callable[..., Any]) -> None:
    provider, server = make("gemini", options={"outputDimensionality": 32})
    server.add_fault("wrong_dimension", index=2)

    with pytest.raises(InvalidResponse) as caught:
        await EmbeddingService().embed(provider, TEXTS)

    assert "embedding 2 has 31 dimensions, the requested size is 32" in caught.value.detail


def test_base64_length_not_multiple() -> None:
    caller = Caller("openai", "m")
    value = base64.b64encode(b"\x00" * 6).decode()

    with pytest.raises(InvalidResponse, match="6 bytes, not a multiple of 4"):
        decode_base64_vector(value, caller, 0, None)


def test_base64_length_not_dimensions() -> None:
    caller = Caller("openai", "m")
    value = base64.b64encode(struct.pack("<3f", 1.0, 2.0, 3.0)).decode()

    with pytest.raises(InvalidResponse, match="12 bytes; 4 dimensions need 16"):
        decode_base64_vector(value, caller, 0, 4)


def test_base64_little_endian() -> None:
    value = base64.b64encode(struct.pack("<2f", 1.5, -2.0)).decode()

    vector = decode_base64_vector(value, Caller("openai", "m"), 0, 2)

    assert vector.tolist() == [1.5, -2.0]


@pytest.mark.parametrize("kind", ["jina", "openai", "voyage"])
async def test_shuffled_data_reordered(kind: str, make: Callable[..., Any]) -> None:
    provider, server = make(kind)
    server.add_fault("shuffled")
    texts = [f"sentence number {index} of five" for index in range(5)]

    vectors = await EmbeddingService().embed(provider, texts)

    dimensions = default_dimensions(server, kind, PROTOCOLS[kind][2])
    assert vectors == pytest.approx(expected(texts, dimensions), abs=1e-6)


# Rejected requests and keys


async def test_jina_v2_task_rejected_at_load(make: Callable[..., Any]) -> None:
    provider, server = make("jina", model="jina-embeddings-v2-base-en", options={"task": "text-matching"})

    with pytest.raises(InvalidModelConfig) as caught:
        await EmbeddingService().embed(provider, TEXTS)

    assert "options.task" in caught.value.detail
    assert server.count() == 0


async def test_jina_v2_task_422_not_retried(make: Callable[..., Any]) -> None:
    provider, server = make("jina", model="jina-embeddings-v2-base-en", options={"task": "text-matching"})

    # `embed` without `load` sends the option anyway, as an unchecked caller would.
    with pytest.raises(RequestRejected) as caught:
        await provider.embed(TEXTS)

    assert server.count() == 1
    assert provider.retries == 0
    assert "HTTP 422" in caught.value.detail
    assert "body.task: Extra inputs are not permitted" in caught.value.detail


async def test_400_not_retried(make: Callable[..., Any]) -> None:
    provider, server = make("openai")

    with pytest.raises(RequestRejected) as caught:
        await EmbeddingService().embed(provider, [""])

    assert server.count() == 1
    assert caught.value.status == 400
    assert "an input string must not be empty" in caught.value.detail


async def test_401_names_key_variable(make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_EMBED_KEY", "wrong-key-0000")
    provider, server = make("openai", api_key_env="TEST_EMBED_KEY", server_options={"require_key": SECRET})

    with pytest.raises(AuthenticationFailed) as caught:
        await EmbeddingService().embed(provider, TEXTS)

    assert server.count() == 1
    assert caught.value.status == 401
    assert "check the environment variable TEST_EMBED_KEY" in caught.value.detail


async def test_gemini_bad_key_names_variable(make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "wrong-key-0000")
    provider, server = make("gemini", server_options={"require_key": SECRET})

    with pytest.raises(AuthenticationFailed) as caught:
        await EmbeddingService().embed(provider, TEXTS)

    assert server.count() == 1
    assert "GEMINI_API_KEY" in caught.value.detail


# Cancellation


async def test_cancel_aborts_request(make: Callable[..., Any]) -> None:
    provider, server = make("openai")
    server.add_fault("slow", delay=5)
    task = asyncio.create_task(EmbeddingService().embed(provider, TEXTS))
    while server.count() == 0:
        await asyncio.sleep(0.01)

    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)

    assert task in done
    assert task.cancelled()


# Runs through the runner and the store


async def test_run_failing_model_isolated(make: Callable[..., Any], tmp_path: Path) -> None:
    healthy, healthy_server = make("openai", name="healthy")
    failing, failing_server = make("ollama", name="failing", batch_size=2, concurrency=1)
    # Texts are batched by length, and each pair here has two texts of one length, so the first
    # batch contains one whole pair. It succeeds and the second returns broken JSON. The latency
    # lets the first batch's result reach the store before the second fails, because a failing
    # batch cancels the other batches of its TaskGroup, including one that is still writing.
    failing_server.latency = 0.3
    failing_server.add_fault("slow", delay=0)
    failing_server.add_fault("malformed_json")
    store = Store(tmp_path / "runs.db")

    outcomes = await run_comparison([pair_set("order", PAIRS)], [healthy, failing], store)

    by_model = {outcome.model: outcome for outcome in outcomes}
    assert by_model["healthy"].status == "completed"
    assert len(store.results(by_model["healthy"].run_id)) == 3
    assert by_model["failing"].status == "failed"
    stored = store.run(by_model["failing"].run_id)
    assert stored["status"] == "failed"
    assert "ollama model nomic-embed-text: HTTP 200" in stored["error"]
    kept = store.results(by_model["failing"].run_id)
    assert [row["pair_id"] for row in kept] == ["p2"]  # the pair of the shortest texts
    assert healthy_server.count() == 1


async def test_second_run_no_requests(make: Callable[..., Any], tmp_path: Path) -> None:
    provider, server = make("voyage", batch_size=2, concurrency=4)
    store = Store(tmp_path / "runs.db")
    pairs = pair_set("order", PAIRS)

    first = await run_comparison([pairs], [provider], store)
    sent = server.count()
    second = await run_comparison([pairs], [provider], store)

    assert sent == 3
    assert server.count() == sent
    assert [row["cosine"] for row in second[0].results] == [row["cosine"] for row in first[0].results]


async def test_run_concurrent_batches_write_once(make: Callable[..., Any], tmp_path: Path) -> None:
    # Several batches finish while earlier results are being written; each pair is stored once.
    provider, _ = make("openai", batch_size=2, concurrency=4)
    store = Store(tmp_path / "runs.db")

    outcome = (await run_comparison([pair_set("order", PAIRS)], [provider], store))[0]

    assert outcome.status == "completed", outcome.error
    assert [row["pair_id"] for row in store.results(outcome.run_id)] == [f"p{i}" for i in range(len(PAIRS))]


async def test_run_cosines_match_server(make: Callable[..., Any], tmp_path: Path) -> None:
    provider, _ = make("cohere")
    store = Store(tmp_path / "runs.db")

    outcome = (await run_comparison([pair_set("order", PAIRS)], [provider], store))[0]

    for row, (a, b) in zip(outcome.results, PAIRS, strict=True):
        left, right = np.array(embedding_for(a, 1536)), np.array(embedding_for(b, 1536))
        assert row["cosine"] == pytest.approx(float(left @ right), abs=1e-6)


async def test_key_never_stored_or_logged(
    make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TEST_EMBED_KEY", SECRET)
    monkeypatch.setenv("TEST_WRONG_KEY", SECRET + "-wrong")
    good, good_server = make(
        "openai", name="good", api_key_env="TEST_EMBED_KEY", server_options={"require_key": SECRET}
    )
    good_server.add_fault("429", retry_after=None)
    bad, _ = make("gemini", name="bad", api_key_env="TEST_WRONG_KEY", server_options={"require_key": SECRET})
    database = tmp_path / "runs.db"
    store = Store(database)

    with caplog.at_level(logging.DEBUG):
        outcomes = await run_comparison([pair_set("order", PAIRS)], [good, bad], store)
    store.close()

    assert [outcome.status for outcome in outcomes] == ["completed", "failed"]
    stored = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("runs.db"))
    assert SECRET.encode() not in stored
    assert database.exists()
    assert "HTTP 429" in caplog.text
    assert SECRET not in caplog.text
    assert SECRET not in (outcomes[1].error or "")
    assert "TEST_WRONG_KEY" in (outcomes[1].error or "")
    assert SECRET not in json.dumps([outcome.as_json() for outcome in outcomes])


def test_remote_error_is_embedding_error() -> None:
    assert issubclass(RemoteError, http.EmbeddingError)


async def test_requests_per_minute_spaces_requests(make: Callable[..., Any]) -> None:
    # 1,200 per minute: request starts at least 50 ms apart. Only a lower bound is checked,
    # so a slow machine cannot make this fail.
    provider, server = make("openai", batch_size=1, concurrency=4, requests_per_minute=1200)

    await EmbeddingService().embed(provider, TEXTS)

    times = sorted(request.time for request in server.requests)
    assert len(times) == 3
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert min(gaps) >= 0.045
