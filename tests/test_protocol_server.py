"""Tests of the local embedding-protocol server, through real sockets with plain httpx."""

from __future__ import annotations

import base64
import email.utils
import json
import math
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from protocol_server import FAULT_KINDS, ProtocolServer, embedding_for, embedding_json, packed_bits  # noqa: E402

KEY = "test-key-1234"


def cosine(first: list[float], second: list[float]) -> float:
    dot = sum(a * b for a, b in zip(first, second, strict=True))
    return dot / math.sqrt(sum(a * a for a in first) * sum(b * b for b in second))


def float32_bytes(vector: list[float]) -> bytes:
    return struct.pack(f"<{len(vector)}f", *vector)


def assert_vectors_close(actual: list[list[float]], expected: list[list[float]]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-9)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ProtocolServer]]:
    started = {flavor: ProtocolServer(flavor).start() for flavor in ("jina", "openai", "voyage")}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(autouse=True)
def reset_servers(servers: dict[str, ProtocolServer]) -> Iterator[None]:
    for server in servers.values():
        server.reset()
        server.require_key = False
        server.latency = 0.0
    yield


@pytest.fixture
def jina(servers: dict[str, ProtocolServer]) -> ProtocolServer:
    return servers["jina"]


@pytest.fixture
def openai(servers: dict[str, ProtocolServer]) -> ProtocolServer:
    return servers["openai"]


@pytest.fixture
def voyage(servers: dict[str, ProtocolServer]) -> ProtocolServer:
    return servers["voyage"]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as http_client:
        yield http_client


def bearer(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ---------------------------------------------------------------------------
# embedding_for
# ---------------------------------------------------------------------------


def test_embedding_for_deterministic() -> None:
    assert embedding_for("the cat sat", 32) == embedding_for("the cat sat", 32)


def test_embedding_for_length_and_norm() -> None:
    vector = embedding_for("the cat sat on the mat", 48)

    assert len(vector) == 48
    assert all(math.isfinite(value) for value in vector)
    assert math.sqrt(sum(value * value for value in vector)) == pytest.approx(1.0)


def test_embedding_for_empty_text_nonzero() -> None:
    assert any(value != 0.0 for value in embedding_for("", 16))


def test_embedding_for_shuffle_similar_not_equal() -> None:
    original = embedding_for("the dog bit the man in the park", 256)
    shuffled = embedding_for("the man bit the dog in the park", 256)
    unrelated = embedding_for("quantum flux capacitors hum loudly", 256)

    assert original != shuffled
    assert cosine(original, shuffled) > 0.7
    assert cosine(original, shuffled) < 0.9999
    assert cosine(original, unrelated) < cosine(original, shuffled)


def test_embedding_for_rejects_zero_dimensions() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        embedding_for("text", 0)


def test_embedding_for_returns_new_list() -> None:
    vector = embedding_for("a cached text", 8)
    vector[0] = 99.0

    assert embedding_for("a cached text", 8)[0] != 99.0


def test_embedding_for_json_matches_list() -> None:
    assert json.loads(embedding_json("the cat sat", 16)) == embedding_for("the cat sat", 16)


def test_float_response_exact_vectors(openai: ProtocolServer, client: httpx.Client) -> None:
    texts = ["the cat sat", "a dog ran", "the cat sat"]
    response = post_openai(client, openai, texts)
    data = response.json()["data"]

    for position, text in enumerate(texts):
        assert data[position]["index"] == position
        assert data[position]["embedding"] == embedding_for(text, 8)


# ---------------------------------------------------------------------------
# Jina
# ---------------------------------------------------------------------------


def test_jina_float_vectors(jina: ProtocolServer, client: httpx.Client) -> None:
    texts = ["the cat sat", "sat the cat"]
    response = client.post(
        f"{jina.base_url}/v1/embeddings",
        json={"model": "jina-embeddings-v3", "input": texts, "task": "text-matching", "dimensions": 32},
        headers=bearer(),
    )
    body = response.json()

    assert response.status_code == 200
    assert body["object"] == "list"
    assert body["model"] == "jina-embeddings-v3"
    assert body["usage"]["total_tokens"] == 6
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert_vectors_close([item["embedding"] for item in body["data"]], [embedding_for(text, 32) for text in texts])


def test_jina_text_objects_and_default_dimensions(jina: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{jina.base_url}/v1/embeddings",
        json={"model": "jina-embeddings-v3", "input": [{"text": "hello world"}]},
    )

    assert response.status_code == 200
    assert response.json()["data"][0]["embedding"] == pytest.approx(embedding_for("hello world", 1024))
    assert jina.texts_seen() == ["hello world"]


def test_jina_base64_byte_exact(jina: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{jina.base_url}/v1/embeddings",
        json={"model": "jina-embeddings-v3", "input": ["a b"], "dimensions": 8, "embedding_type": "base64"},
    )
    encoded = response.json()["data"][0]["embedding"]

    assert base64.b64decode(encoded) == float32_bytes(embedding_for("a b", 8))


def test_jina_binary_packed_bits(jina: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{jina.base_url}/v1/embeddings",
        json={"model": "jina-embeddings-v3", "input": ["a b"], "dimensions": 16, "embedding_type": "ubinary"},
    )

    assert response.json()["data"][0]["embedding"] == packed_bits(embedding_for("a b", 16), signed=False)


def test_jina_v2_rejects_task(jina: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{jina.base_url}/v1/embeddings",
        json={"model": "jina-embeddings-v2-base-en", "input": ["x"], "task": "retrieval.query"},
    )

    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "extra_forbidden",
                "loc": ["body", "task"],
                "msg": "Extra inputs are not permitted",
                "input": "retrieval.query",
            }
        ]
    }


@pytest.mark.parametrize("field", ["dimensions", "late_chunking"])
def test_jina_v2_rejects_v3_fields(jina: ProtocolServer, client: httpx.Client, field: str) -> None:
    value = 64 if field == "dimensions" else True
    response = client.post(
        f"{jina.base_url}/v1/embeddings",
        json={"model": "jina-embeddings-v2-base-en", "input": ["x"], field: value},
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]


def test_jina_unknown_field(jina: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{jina.base_url}/v1/embeddings", json={"model": "jina-embeddings-v3", "input": ["x"], "colour": 1}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "extra_forbidden"
    assert response.json()["detail"][0]["loc"] == ["body", "colour"]


def test_jina_wrong_type(jina: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{jina.base_url}/v1/embeddings", json={"model": "jina-embeddings-v3", "input": ["x"], "dimensions": "64"}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "int_type"


def test_jina_bad_embedding_type(jina: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{jina.base_url}/v1/embeddings", json={"model": "jina-embeddings-v3", "input": ["x"], "embedding_type": "int4"}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "literal_error"


def test_jina_missing_key(jina: ProtocolServer, client: httpx.Client) -> None:
    jina.require_key = True
    response = client.post(f"{jina.base_url}/v1/embeddings", json={"model": "jina-embeddings-v3", "input": ["x"]})

    assert response.status_code == 401
    assert isinstance(response.json()["detail"], str)


def test_jina_any_key_accepted(jina: ProtocolServer, client: httpx.Client) -> None:
    jina.require_key = True
    response = client.post(
        f"{jina.base_url}/v1/embeddings",
        json={"model": "jina-embeddings-v3", "input": ["x"]},
        headers=bearer("anything"),
    )

    assert response.status_code == 200


def test_jina_wrong_key(jina: ProtocolServer, client: httpx.Client) -> None:
    jina.require_key = KEY
    response = client.post(
        f"{jina.base_url}/v1/embeddings", json={"model": "jina-embeddings-v3", "input": ["x"]}, headers=bearer("other")
    )

    assert response.status_code == 401


# ---------------------------------------------------------------------------
# OpenAI
# ---------------------------------------------------------------------------


def test_openai_float_vectors(openai: ProtocolServer, client: httpx.Client) -> None:
    texts = ["one two", "two one", "three"]
    response = client.post(
        f"{openai.base_url}/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": texts, "dimensions": 24, "user": "tester"},
        headers=bearer(),
    )
    body = response.json()

    assert response.status_code == 200
    assert body["object"] == "list"
    assert body["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    assert [item["object"] for item in body["data"]] == ["embedding"] * 3
    assert_vectors_close([item["embedding"] for item in body["data"]], [embedding_for(text, 24) for text in texts])


def test_openai_string_input(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(f"{openai.base_url}/v1/embeddings", json={"model": "local-model", "input": "just one"})

    assert response.status_code == 200
    assert response.json()["data"][0]["embedding"] == pytest.approx(embedding_for("just one", 64))


def test_openai_configured_dimensions(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.dimensions["my-model"] = 12
    response = client.post(f"{openai.base_url}/v1/embeddings", json={"model": "my-model", "input": ["x"]})

    assert len(response.json()["data"][0]["embedding"]) == 12


def test_openai_base64_byte_exact(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{openai.base_url}/v1/embeddings",
        json={
            "model": "text-embedding-3-small",
            "input": ["alpha beta"],
            "dimensions": 16,
            "encoding_format": "base64",
        },
    )

    assert base64.b64decode(response.json()["data"][0]["embedding"]) == float32_bytes(embedding_for("alpha beta", 16))


def test_openai_compatible_prefix(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(f"{openai.base_url}/compat/v1/embeddings", json={"model": "m", "input": ["x"]})

    assert response.status_code == 200
    assert openai.count("/compat/v1/embeddings") == 1


def test_openai_unknown_field(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(f"{openai.base_url}/v1/embeddings", json={"model": "m", "input": ["x"], "task": "query"})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "Unrecognized request argument supplied: task",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_openai_wrong_type(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(f"{openai.base_url}/v1/embeddings", json={"model": "m", "input": ["x"], "dimensions": "8"})
    error = response.json()["error"]

    assert response.status_code == 400
    assert error["param"] == "dimensions"
    assert error["code"] == "invalid_type"


def test_openai_ada_rejects_dimensions(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{openai.base_url}/v1/embeddings", json={"model": "text-embedding-ada-002", "input": ["x"], "dimensions": 8}
    )

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "dimensions"


def test_openai_invalid_json_body(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{openai.base_url}/v1/embeddings", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_openai_missing_key(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.require_key = True
    response = client.post(f"{openai.base_url}/v1/embeddings", json={"model": "m", "input": ["x"]})
    error = response.json()["error"]

    assert response.status_code == 401
    assert error["type"] == "invalid_request_error"
    assert "API key" in error["message"]


def test_openai_wrong_key(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.require_key = KEY
    response = client.post(
        f"{openai.base_url}/v1/embeddings", json={"model": "m", "input": ["x"]}, headers=bearer("sk-wrong")
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_unknown_path_404(openai: ProtocolServer, client: httpx.Client) -> None:
    assert client.post(f"{openai.base_url}/v1/chat", json={}).status_code == 404


# ---------------------------------------------------------------------------
# Voyage
# ---------------------------------------------------------------------------


def test_voyage_float_vectors(voyage: ProtocolServer, client: httpx.Client) -> None:
    texts = ["red fox", "fox red"]
    response = client.post(
        f"{voyage.base_url}/v1/embeddings",
        json={
            "model": "voyage-3",
            "input": texts,
            "input_type": "document",
            "truncation": True,
            "output_dimension": 20,
        },
        headers=bearer(),
    )
    body = response.json()

    assert response.status_code == 200
    assert body["usage"] == {"total_tokens": 4}
    assert_vectors_close([item["embedding"] for item in body["data"]], [embedding_for(text, 20) for text in texts])


def test_voyage_null_input_type(voyage: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{voyage.base_url}/v1/embeddings",
        json={"model": "voyage-3", "input": "x", "input_type": None, "output_dimension": 8},
    )

    assert response.status_code == 200


def test_voyage_base64_byte_exact(voyage: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{voyage.base_url}/v1/embeddings",
        json={"model": "voyage-3", "input": ["x y"], "output_dimension": 8, "encoding_format": "base64"},
    )

    assert base64.b64decode(response.json()["data"][0]["embedding"]) == float32_bytes(embedding_for("x y", 8))


def test_voyage_unknown_field(voyage: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{voyage.base_url}/v1/embeddings", json={"model": "voyage-3", "input": ["x"], "dimensions": 8}
    )

    assert response.status_code == 400
    assert "dimensions" in response.json()["detail"]


def test_voyage_batch_limit(voyage: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(f"{voyage.base_url}/v1/embeddings", json={"model": "voyage-3", "input": ["x"] * 129})

    assert response.status_code == 400
    assert "128" in response.json()["detail"]


def test_voyage_missing_key(voyage: ProtocolServer, client: httpx.Client) -> None:
    voyage.require_key = True
    response = client.post(f"{voyage.base_url}/v1/embeddings", json={"model": "voyage-3", "input": ["x"]})

    assert response.status_code == 401
    assert isinstance(response.json()["detail"], str)


# ---------------------------------------------------------------------------
# Ollama
# ---------------------------------------------------------------------------


def test_ollama_vectors(openai: ProtocolServer, client: httpx.Client) -> None:
    texts = ["why is the sky blue", "blue is the sky why"]
    response = client.post(
        f"{openai.base_url}/api/embed",
        json={"model": "nomic-embed-text", "input": texts, "truncate": True, "keep_alive": "5m", "options": {}},
    )
    body = response.json()

    assert response.status_code == 200
    assert body["model"] == "nomic-embed-text"
    assert body["prompt_eval_count"] == 10
    assert "total_duration" in body
    assert "load_duration" in body
    assert_vectors_close(body["embeddings"], [embedding_for(text, 768) for text in texts])


def test_ollama_string_input_dimensions(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{openai.base_url}/api/embed", json={"model": "all-minilm", "input": "hi", "dimensions": 10}
    )

    assert response.json()["embeddings"] == [pytest.approx(embedding_for("hi", 10))]


def test_ollama_unknown_field(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(f"{openai.base_url}/api/embed", json={"model": "m", "input": ["x"], "prompt": "x"})

    assert response.status_code == 400
    assert response.json() == {"error": 'json: unknown field "prompt"'}


def test_ollama_lenient_mode(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.strict = False
    try:
        response = client.post(f"{openai.base_url}/api/embed", json={"model": "m", "input": ["x"], "prompt": "x"})
    finally:
        openai.strict = True

    assert response.status_code == 200


def test_ollama_wrong_type(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(f"{openai.base_url}/api/embed", json={"model": "m", "input": ["x"], "truncate": "yes"})

    assert response.status_code == 400
    assert "cannot unmarshal string" in response.json()["error"]


def test_ollama_missing_key(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.require_key = True
    response = client.post(f"{openai.base_url}/api/embed", json={"model": "m", "input": ["x"]})

    assert response.status_code == 401
    assert isinstance(response.json()["error"], str)


# ---------------------------------------------------------------------------
# TEI
# ---------------------------------------------------------------------------


def test_tei_bare_array(openai: ProtocolServer, client: httpx.Client) -> None:
    texts = ["first text", "text first"]
    response = client.post(
        f"{openai.base_url}/embed",
        json={
            "inputs": texts,
            "normalize": True,
            "truncate": False,
            "truncation_direction": "Right",
            "prompt_name": None,
        },
    )

    assert response.status_code == 200
    assert_vectors_close(response.json(), [embedding_for(text, 384) for text in texts])


def test_tei_dimensions(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(f"{openai.base_url}/embed", json={"inputs": "one", "dimensions": 6})

    assert response.json() == [pytest.approx(embedding_for("one", 6))]


def test_tei_info(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.tei_max_client_batch_size = 4
    try:
        info = client.get(f"{openai.base_url}/info").json()
    finally:
        openai.tei_max_client_batch_size = 32

    assert info["model_id"] == "BAAI/bge-small-en-v1.5"
    assert info["max_client_batch_size"] == 4
    assert "max_batch_tokens" in info
    assert "max_input_length" in info


def test_tei_batch_limit(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(f"{openai.base_url}/embed", json={"inputs": ["x"] * 33})

    assert response.status_code == 422
    assert response.json()["error_type"] == "Validation"
    assert "32" in response.json()["error"]


def test_tei_unknown_field(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(f"{openai.base_url}/embed", json={"inputs": ["x"], "input": ["x"]})

    assert response.status_code == 422
    assert response.json()["error_type"] == "Validation"


def test_tei_bad_truncation_direction(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(f"{openai.base_url}/embed", json={"inputs": ["x"], "truncation_direction": "left"})

    assert response.status_code == 422


def test_tei_missing_key(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.require_key = KEY
    response = client.post(f"{openai.base_url}/embed", json={"inputs": ["x"]})

    assert response.status_code == 401
    assert response.content == b""


# ---------------------------------------------------------------------------
# Cohere
# ---------------------------------------------------------------------------


def test_cohere_vectors(openai: ProtocolServer, client: httpx.Client) -> None:
    texts = ["a quick test", "test quick a"]
    response = client.post(
        f"{openai.base_url}/v2/embed",
        json={
            "model": "embed-v4.0",
            "texts": texts,
            "input_type": "clustering",
            "embedding_types": ["float"],
            "truncate": "END",
            "output_dimension": 256,
        },
        headers=bearer(),
    )
    body = response.json()

    assert response.status_code == 200
    assert body["response_type"] == "embeddings_by_type"
    assert body["texts"] == texts
    assert "id" in body
    assert body["meta"]["billed_units"]["input_tokens"] == 6
    assert_vectors_close(body["embeddings"]["float"], [embedding_for(text, 256) for text in texts])


def test_cohere_requires_input_type(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(f"{openai.base_url}/v2/embed", json={"model": "embed-v4.0", "texts": ["x"]})

    assert response.status_code == 400
    assert "input_type" in response.json()["message"]


def test_cohere_unknown_field(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{openai.base_url}/v2/embed",
        json={"model": "embed-v4.0", "texts": ["x"], "input_type": "clustering", "dimensions": 8},
    )

    assert response.status_code == 400
    assert "dimensions" in response.json()["message"]


def test_cohere_batch_limit(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(
        f"{openai.base_url}/v2/embed",
        json={"model": "embed-v4.0", "texts": ["x"] * 97, "input_type": "clustering"},
    )

    assert response.status_code == 400
    assert "96" in response.json()["message"]


def test_cohere_missing_key(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.require_key = True
    response = client.post(
        f"{openai.base_url}/v2/embed", json={"model": "embed-v4.0", "texts": ["x"], "input_type": "clustering"}
    )

    assert response.status_code == 401
    assert isinstance(response.json()["message"], str)


# ---------------------------------------------------------------------------
# Gemini
# ---------------------------------------------------------------------------


def gemini_body(model: str, texts: list[str], **extra: object) -> dict[str, object]:
    return {
        "requests": [{"model": f"models/{model}", "content": {"parts": [{"text": text}]}, **extra} for text in texts]
    }


def gemini_url(server: ProtocolServer, model: str = "gemini-embedding-001") -> str:
    return f"{server.base_url}/v1beta/models/{model}:batchEmbedContents"


def test_gemini_vectors(openai: ProtocolServer, client: httpx.Client) -> None:
    texts = ["sun rises", "rises sun"]
    body = gemini_body("gemini-embedding-001", texts, taskType="SEMANTIC_SIMILARITY", outputDimensionality=16)
    response = client.post(gemini_url(openai), json=body, headers={"x-goog-api-key": KEY})

    assert response.status_code == 200
    assert_vectors_close(
        [item["values"] for item in response.json()["embeddings"]], [embedding_for(text, 16) for text in texts]
    )
    assert openai.texts_seen() == texts


def test_gemini_snake_case_fields(openai: ProtocolServer, client: httpx.Client) -> None:
    body = gemini_body("gemini-embedding-001", ["x"], task_type="CLUSTERING", output_dimensionality=5)
    response = client.post(gemini_url(openai), json=body)

    assert len(response.json()["embeddings"][0]["values"]) == 5


def test_gemini_unknown_field(openai: ProtocolServer, client: httpx.Client) -> None:
    body = gemini_body("gemini-embedding-001", ["x"], dimensions=8)
    response = client.post(gemini_url(openai), json=body)
    error = response.json()["error"]

    assert response.status_code == 400
    assert error["code"] == 400
    assert error["status"] == "INVALID_ARGUMENT"
    assert 'Unknown name "dimensions"' in error["message"]


def test_gemini_model_mismatch(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(gemini_url(openai), json=gemini_body("text-embedding-004", ["x"]))

    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_gemini_batch_limit(openai: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(gemini_url(openai), json=gemini_body("gemini-embedding-001", ["x"] * 101))

    assert response.status_code == 400
    assert "at most 100" in response.json()["error"]["message"]


def test_gemini_missing_key(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.require_key = True
    response = client.post(gemini_url(openai), json=gemini_body("gemini-embedding-001", ["x"]))

    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


def test_gemini_wrong_key(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.require_key = KEY
    response = client.post(
        gemini_url(openai), json=gemini_body("gemini-embedding-001", ["x"]), headers={"x-goog-api-key": "nope"}
    )

    assert response.status_code == 400
    assert "API key not valid" in response.json()["error"]["message"]


def test_gemini_key_in_query(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.require_key = KEY
    response = client.post(f"{gemini_url(openai)}?key={KEY}", json=gemini_body("gemini-embedding-001", ["x"]))

    assert response.status_code == 200


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------


def post_openai(client: httpx.Client, server: ProtocolServer, texts: list[str], **extra: object) -> httpx.Response:
    body = {"model": "m", "input": texts, "dimensions": 8, **extra}
    return client.post(f"{server.base_url}/v1/embeddings", json=body)


def test_fault_429_seconds(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("429", retry_after=3)
    response = post_openai(client, openai, ["x"])

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_fault_429_http_date(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("429", retry_after=120, http_date=True)
    response = post_openai(client, openai, ["x"])
    retry_at = email.utils.parsedate_to_datetime(response.headers["Retry-After"]).timestamp()

    assert response.status_code == 429
    assert retry_at > time.time() + 60


def test_fault_429_shape_per_protocol(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("429", count=2)
    gemini = client.post(gemini_url(openai), json=gemini_body("gemini-embedding-001", ["x"]))
    tei = client.post(f"{openai.base_url}/embed", json={"inputs": ["x"]})

    assert gemini.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert tei.json()["error_type"] == "Overloaded"


@pytest.mark.parametrize("status", [500, 503])
def test_fault_server_errors(openai: ProtocolServer, client: httpx.Client, status: int) -> None:
    openai.add_fault(str(status))
    response = post_openai(client, openai, ["x"])

    assert response.status_code == status
    assert "message" in response.json()["error"]


def test_fault_count_consumed(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("500", count=2)
    statuses = [post_openai(client, openai, ["x"]).status_code for _ in range(3)]

    assert statuses == [500, 500, 200]
    assert openai.pending_faults() == 0


def test_fault_path_filter(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("503", path="/embed")
    info = client.get(f"{openai.base_url}/info")
    embed = client.post(f"{openai.base_url}/embed", json={"inputs": ["x"]})

    assert info.status_code == 200
    assert embed.status_code == 503


def test_fault_slow_times_out(openai: ProtocolServer) -> None:
    openai.add_fault("slow", delay=2.0)
    with httpx.Client(timeout=0.2) as short_client:
        with pytest.raises(httpx.ReadTimeout):
            post_openai(short_client, openai, ["x"])


def test_fault_slow_then_answers(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("slow", delay=0.05)
    response = post_openai(client, openai, ["x"])

    assert response.status_code == 200


def test_fault_drop_connection(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        post_openai(client, openai, ["x"])


def test_server_usable_after_drop(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        post_openai(client, openai, ["x"])

    assert post_openai(client, openai, ["x"]).status_code == 200


def test_fault_malformed_json(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("malformed_json")
    response = post_openai(client, openai, ["x", "y"])

    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_fault_fewer_vectors(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("fewer_vectors")
    response = post_openai(client, openai, ["a", "b", "c"])

    assert len(response.json()["data"]) == 2


def test_fault_wrong_dimension(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("wrong_dimension", index=1)
    lengths = [len(item["embedding"]) for item in post_openai(client, openai, ["a", "b", "c"]).json()["data"]]

    assert lengths == [8, 7, 8]


def test_fault_nan_literal(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("nan")
    response = post_openai(client, openai, ["a"])

    assert "NaN" in response.text
    assert math.isnan(response.json()["data"][0]["embedding"][0])


def test_fault_nan_in_base64(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("nan")
    response = post_openai(client, openai, ["a"], encoding_format="base64")
    first = struct.unpack("<f", base64.b64decode(response.json()["data"][0]["embedding"])[:4])[0]

    assert math.isnan(first)


def test_fault_zero_vector(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("zero_vector")
    vectors = [item["embedding"] for item in post_openai(client, openai, ["a", "b"]).json()["data"]]

    assert vectors[0] == [0.0] * 8
    assert any(value != 0.0 for value in vectors[1])


def test_fault_floats_for_base64(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("wrong_encoding")
    response = post_openai(client, openai, ["a"], encoding_format="base64")

    assert isinstance(response.json()["data"][0]["embedding"], list)


def test_fault_base64_for_floats(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("wrong_encoding")
    response = post_openai(client, openai, ["a"])

    assert isinstance(response.json()["data"][0]["embedding"], str)


def test_fault_wrong_encoding_ollama(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("wrong_encoding")
    response = client.post(f"{openai.base_url}/api/embed", json={"model": "m", "input": ["a"]})

    assert isinstance(response.json()["embeddings"][0], str)


def test_fault_shuffled_indexes(openai: ProtocolServer, client: httpx.Client) -> None:
    texts = ["a", "b", "c", "d", "e"]
    openai.add_fault("shuffled")
    data = post_openai(client, openai, texts).json()["data"]
    indexes = [item["index"] for item in data]
    ordered = [item["embedding"] for item in sorted(data, key=lambda item: item["index"])]

    assert sorted(indexes) == list(range(5))
    assert indexes != list(range(5))
    assert_vectors_close(ordered, [embedding_for(text, 8) for text in texts])


def test_fault_429_fractional_seconds(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("429", retry_after=0.25)
    response = post_openai(client, openai, ["x"])

    assert response.headers["Retry-After"] == "0.25"


def test_fault_429_whole_float_integer(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("429", retry_after=2.0)
    response = post_openai(client, openai, ["x"])

    assert response.headers["Retry-After"] == "2"


def test_rate_429_fractional_seconds(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.set_rate_429(1.0, retry_after=0.1)
    response = post_openai(client, openai, ["x"])

    assert response.headers["Retry-After"] == "0.1"


def test_rate_429_negative_rejected(openai: ProtocolServer) -> None:
    with pytest.raises(ValueError, match="retry_after"):
        openai.set_rate_429(0.5, retry_after=-1)


def test_fault_rate_429_all(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.set_rate_429(1.0, retry_after=2)
    response = post_openai(client, openai, ["x"])

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"


def test_fault_rate_429_seeded(openai: ProtocolServer, client: httpx.Client) -> None:
    def run() -> list[int]:
        openai.reset()
        openai.set_rate_429(0.5)
        return [post_openai(client, openai, ["x"]).status_code for _ in range(20)]

    first = run()
    second = run()

    assert first == second
    assert 429 in first
    assert 200 in first


def test_fault_unknown_kind(openai: ProtocolServer) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        openai.add_fault("teapot")


def test_fault_kinds_listed() -> None:
    assert "shuffled" in FAULT_KINDS


# ---------------------------------------------------------------------------
# Records, concurrency, lifecycle
# ---------------------------------------------------------------------------


def test_records_request(openai: ProtocolServer, client: httpx.Client) -> None:
    client.post(f"{openai.base_url}/v1/embeddings", json={"model": "m", "input": ["x"]}, headers=bearer())
    record = openai.requests[0]

    assert record.method == "POST"
    assert record.path == "/v1/embeddings"
    assert record.headers["authorization"] == f"Bearer {KEY}"
    assert record.json_body == {"model": "m", "input": ["x"]}
    assert record.time > 0


def test_count_and_texts_seen(openai: ProtocolServer, client: httpx.Client) -> None:
    post_openai(client, openai, ["one", "two"])
    client.post(f"{openai.base_url}/embed", json={"inputs": "three"})
    client.post(f"{openai.base_url}/v2/embed", json={"model": "c", "texts": ["four"], "input_type": "clustering"})

    assert openai.count() == 3
    assert openai.count("/embed") == 1
    assert openai.texts_seen() == ["one", "two", "three", "four"]


def test_records_response_status(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("429")
    post_openai(client, openai, ["x"])
    post_openai(client, openai, ["y"])
    responses = openai.responses

    assert [response.status for response in responses] == [429, 200]
    assert [response.request.json_body["input"] for response in responses] == [["x"], ["y"]]


def test_reset_clears(openai: ProtocolServer, client: httpx.Client) -> None:
    openai.add_fault("500")
    post_openai(client, openai, ["x"])
    openai.add_fault("500")
    openai.reset()

    assert openai.count() == 0
    assert openai.pending_faults() == 0
    assert post_openai(client, openai, ["x"]).status_code == 200


def test_concurrent_requests(openai: ProtocolServer) -> None:
    openai.latency = 0.05

    def send(position: int) -> int:
        with httpx.Client(timeout=5.0) as own_client:
            return post_openai(own_client, openai, [f"text {position}"]).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, range(8)))

    assert statuses == [200] * 8
    assert openai.count() == 8


def test_keep_alive_reuses_connection(openai: ProtocolServer, client: httpx.Client) -> None:
    first = post_openai(client, openai, ["x"])
    second = post_openai(client, openai, ["y"])

    assert first.http_version == "HTTP/1.1"
    assert second.status_code == 200
    assert "close" not in second.headers.get("connection", "")


def test_context_manager_stops() -> None:
    with ProtocolServer("jina") as server:
        url = server.base_url
        assert (
            httpx.post(f"{url}/v1/embeddings", json={"model": "jina-embeddings-v3", "input": ["x"]}).status_code == 200
        )

    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{url}/v1/embeddings", json={"model": "jina-embeddings-v3", "input": ["x"]}, timeout=1.0)


def test_unknown_flavor_rejected() -> None:
    with pytest.raises(ValueError, match="flavor"):
        ProtocolServer("mistral")


def test_command_line_serves() -> None:
    script = Path(__file__).parent / "protocol_server.py"
    process = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--flavor", "voyage"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        base_url = line.strip().removeprefix("listening on ")
        response = httpx.post(f"{base_url}/v1/embeddings", json={"model": "voyage-3", "input": ["x"]}, timeout=5.0)
    finally:
        process.terminate()
        process.wait(timeout=5)

    assert line.startswith("listening on http://127.0.0.1:")
    assert response.status_code == 200
    assert len(response.json()["data"][0]["embedding"]) == 1024


# ---------------------------------------------------------------------------
# Control routes
# ---------------------------------------------------------------------------


@pytest.fixture
def controlled() -> Iterator[ProtocolServer]:
    with ProtocolServer("openai", control_routes=True) as server:
        yield server


def test_control_routes_off_by_default(openai: ProtocolServer, client: httpx.Client) -> None:
    assert client.get(f"{openai.base_url}/_stats").status_code == 404


def test_stats_lists_responses(controlled: ProtocolServer, client: httpx.Client) -> None:
    controlled.add_fault("429")
    post_openai(client, controlled, ["one", "two"])
    post_openai(client, controlled, ["one", "two"])
    stats = client.get(f"{controlled.base_url}/_stats").json()

    assert stats["requests"] == 2
    assert [response["status"] for response in stats["responses"]] == [429, 200]
    assert stats["responses"][1]["texts"] == ["one", "two"]
    assert stats["responses"][1]["path"] == "/v1/embeddings"
    assert stats["cpu_seconds"] > 0


def test_stats_not_recorded(controlled: ProtocolServer, client: httpx.Client) -> None:
    client.get(f"{controlled.base_url}/_stats")
    client.post(f"{controlled.base_url}/_reset")

    assert controlled.count() == 0


def test_reset_route_sets_rate(controlled: ProtocolServer, client: httpx.Client) -> None:
    post_openai(client, controlled, ["x"])
    reset = client.post(f"{controlled.base_url}/_reset", json={"rate_429": 1.0, "retry_after": 0.1})
    response = post_openai(client, controlled, ["x"])

    assert reset.status_code == 200
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "0.1"
    assert controlled.count() == 1


def test_reset_route_rejects_text(controlled: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(f"{controlled.base_url}/_reset", json={"rate_429": "often"})

    assert response.status_code == 400
    assert "rate_429" in response.json()["error"]


def test_reset_route_rejects_negative(controlled: ProtocolServer, client: httpx.Client) -> None:
    response = client.post(f"{controlled.base_url}/_reset", json={"rate_429": 0.5, "retry_after": -1})

    assert response.status_code == 400
    assert "retry_after" in response.json()["error"]


def test_stats_wrong_method(controlled: ProtocolServer, client: httpx.Client) -> None:
    assert client.post(f"{controlled.base_url}/_stats").status_code == 405


def test_command_line_control_routes() -> None:
    script = Path(__file__).parent / "protocol_server.py"
    command = [sys.executable, str(script), "--control-routes", "--rate-429", "1", "--retry-after", "0.1"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        base_url = line.strip().removeprefix("listening on ")
        with httpx.Client(timeout=5.0) as own_client:
            response = own_client.post(f"{base_url}/v1/embeddings", json={"model": "m", "input": ["x"]})
            stats = own_client.get(f"{base_url}/_stats").json()
    finally:
        process.terminate()
        process.wait(timeout=5)

    assert response.headers["Retry-After"] == "0.1"
    assert [entry["status"] for entry in stats["responses"]] == [429]
