"""A local HTTP server that speaks the wire protocols of remote embedding services.

The tests of the HTTP providers cannot reach Jina, OpenAI, Ollama, TEI, Cohere,
Voyage or Gemini, so this server handles their requests on 127.0.0.1 with real
sockets: it checks each request body against the documented fields, returns
deterministic vectors from `embedding_for`, records every request and injects
faults (429, 5xx, dropped connections, broken vectors) on demand.

Routes, all served by every instance:

- `POST .../embeddings` (any path prefix, such as `/v1` or `/compat/v1`): the
  protocol chosen by the `flavor` constructor option, because Jina, OpenAI and
  Voyage share the path `/v1/embeddings`. Start one server per flavor.
- `POST /api/embed`: Ollama.
- `POST /embed` and `GET /info`: text-embeddings-inference (TEI).
- `POST /v2/embed`: Cohere.
- `POST /{version}/models/{model}:batchEmbedContents`: Gemini.

Usage from a test:

    with ProtocolServer(flavor="openai") as server:
        server.add_fault("429", count=2, retry_after=1)
        ...  # point the provider at server.base_url
        assert server.count("/v1/embeddings") == 3

Run `python tests/protocol_server.py --port 8765 --flavor jina` to serve by hand.
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import hashlib
import http.server
import itertools
import json
import logging
import math
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

FLAVORS = ("jina", "openai", "voyage")

FAULT_KINDS = (
    "429",
    "500",
    "503",
    "slow",
    "drop",
    "malformed_json",
    "fewer_vectors",
    "wrong_dimension",
    "nan",
    "zero_vector",
    "wrong_encoding",
    "shuffled",
)

DEFAULT_DIMENSIONS: dict[str, int] = {
    "jina-embeddings-v3": 1024,
    "jina-embeddings-v2-base-en": 768,
    "jina-embeddings-v2-small-en": 512,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "nomic-embed-text": 768,
    "all-minilm": 384,
    "BAAI/bge-small-en-v1.5": 384,
    "embed-english-v3.0": 1024,
    "embed-multilingual-v3.0": 1024,
    "embed-v4.0": 1536,
    "voyage-3": 1024,
    "voyage-3.5": 1024,
    "voyage-3-lite": 512,
    "gemini-embedding-001": 3072,
    "text-embedding-004": 768,
}

# Weight of the word-bigram part of `embedding_for`. With 0.3, shuffles of five short
# sentences kept a cosine similarity of 0.93 to 0.99 with the original at 1024 dimensions.
BIGRAM_WEIGHT = 0.3

TOKEN_PATTERN = re.compile(r"\w+", re.UNICODE)


# ---------------------------------------------------------------------------
# Deterministic embeddings
# ---------------------------------------------------------------------------


# Bounds of the caches below, in entries. At 64 dimensions a cached text costs about 0.7 kB as an
# array and 1.4 kB as JSON, so 100,000 texts take about 210 MB. The size grows with the dimensions:
# 10,000 texts at 1536 dimensions take about 370 MB.
TOKEN_CACHE_SIZE = 65_536
EMBEDDING_CACHE_SIZE = 100_000


@lru_cache(maxsize=TOKEN_CACHE_SIZE)
def _token_vector(token: str, dimensions: int) -> np.ndarray:
    """Return a read-only pseudo-random float64 vector in [-1, 1) seeded from the SHA-256 of the token."""
    seed = hashlib.sha256(token.encode("utf-8")).digest()
    stream = hashlib.shake_256(seed).digest(2 * dimensions)
    vector = np.frombuffer(stream, dtype="<i2") / 32768.0
    vector.flags.writeable = False
    return vector


def tokenize(text: str) -> list[str]:
    """Split text into lower-case word tokens, the unit that `embedding_for` averages."""
    return TOKEN_PATTERN.findall(text.lower())


@lru_cache(maxsize=EMBEDDING_CACHE_SIZE)
def _embedding_array(text: str, dimensions: int) -> np.ndarray:
    """Compute the read-only vector of `embedding_for` with numpy, cached per text and size."""
    tokens = tokenize(text) or ["\x00empty"]
    pairs = [f"{first}\x00{second}" for first, second in itertools.pairwise(tokens)]

    # One weighted sum over the rows: weight 1 for each token, BIGRAM_WEIGHT for each pair.
    rows = np.array([_token_vector(token, dimensions) for token in tokens + pairs])
    weights = np.full(len(rows), BIGRAM_WEIGHT)
    weights[: len(tokens)] = 1.0
    total = weights @ rows

    norm = float(np.sqrt(total @ total))
    if norm == 0.0:
        # Only possible when every stream value is zero, which SHAKE-256 makes negligible.
        total[0] = 1.0
        norm = 1.0
    vector = total / norm
    vector.flags.writeable = False
    return vector


def embedding_for(text: str, dimensions: int) -> list[float]:
    """Return the unit-length vector that the server sends for `text`, as a new list.

    The vector is the sum of one pseudo-random vector per word token (a bag of
    words) plus `BIGRAM_WEIGHT` times one vector per adjacent word pair, which is
    the part that changes when the words are shuffled. A text without word
    tokens gets the vector of a fixed placeholder token, so no vector is zero.
    """
    if dimensions < 1:
        raise ValueError(f"dimensions must be at least 1, got {dimensions}")
    return _embedding_array(text, dimensions).tolist()


@lru_cache(maxsize=EMBEDDING_CACHE_SIZE)
def embedding_json(text: str, dimensions: int) -> str:
    """Return `json.dumps(embedding_for(text, dimensions))`, cached because encoding floats is slow."""
    return json.dumps(embedding_for(text, dimensions))


def count_tokens(texts: list[str]) -> int:
    """Return the token count reported in usage fields: word tokens, at least one per text."""
    return sum(max(1, len(tokenize(text))) for text in texts)


def float32_base64(vector: list[float]) -> str:
    """Encode a vector as base64 of little-endian float32, as OpenAI, Jina and Voyage do."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def packed_bits(vector: list[float], signed: bool) -> list[int]:
    """Pack the sign bits of a vector, 8 per byte, most significant bit first.

    Positive values become 1 bits. `signed=True` gives the "binary" type (each
    byte minus 128, an int8); `signed=False` gives "ubinary" (uint8).
    """
    packed: list[int] = []
    for start in range(0, len(vector), 8):
        byte = 0
        for offset, value in enumerate(vector[start : start + 8]):
            if value > 0:
                byte |= 0x80 >> offset
        packed.append(byte - 128 if signed else byte)
    return packed


def quantized(vector: list[float], signed: bool) -> list[int]:
    """Scale a unit vector to int8 (signed) or uint8 values.

    NOTE: the services do not document their quantization scale, so this mapping
    (value * 127, plus 128 for uint8) is this server's own.
    """
    scaled = [max(-127, min(127, round(value * 127))) for value in vector]
    return scaled if signed else [value + 128 for value in scaled]


def encode_vector(vector: list[float], encoding: str) -> Any:
    """Encode one vector as the named output type: float, base64, binary, ubinary, int8, uint8."""
    if encoding == "float":
        return vector
    if encoding == "base64":
        return float32_base64(vector)
    if encoding in ("binary", "ubinary"):
        return packed_bits(vector, signed=encoding == "binary")
    if encoding in ("int8", "uint8"):
        return quantized(vector, signed=encoding == "int8")
    raise ValueError(f"unknown encoding {encoding!r}; expected float, base64, binary, ubinary, int8 or uint8")


# ---------------------------------------------------------------------------
# Records and faults
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it.

    `headers` has lower-case names. `json_body` is None when the body was empty
    or not valid JSON. `time` is `time.monotonic()` at arrival.
    """

    method: str
    path: str
    headers: dict[str, str]
    json_body: Any
    time: float


@dataclass(frozen=True)
class RecordedResponse:
    """The status the server sent for one recorded request; 0 when it dropped the connection."""

    request: RecordedRequest
    status: int


@dataclass
class Fault:
    """A fault to inject: its kind, its parameters and an optional exact path filter."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    remaining: int = 1
    probability: float = 0.0

    def matches(self, path: str) -> bool:
        return self.path is None or self.path == path


def validate_fault_kind(kind: str) -> None:
    """Raise ValueError unless `kind` is one of `FAULT_KINDS`."""
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")


@dataclass
class Reply:
    """A response that a protocol handler built, before response faults are applied.

    When `fragments` is set, the body contains the string `vector_placeholder(i)`
    in place of vector i, and `payload()` puts `fragments[i]`, the vector's JSON
    text, in its place.
    """

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    fragments: list[str] | None = None

    def payload(self) -> bytes:
        """Return the bytes of the response body."""
        if self.raw is not None:
            return self.raw
        text = json.dumps(self.body)
        if self.fragments is not None:
            fragments = self.fragments
            text = PLACEHOLDER_PATTERN.sub(lambda match: fragments[int(match.group(1))], text)
        return text.encode("utf-8")


# The placeholder of a vector in a body is a JSON string with a random token, which no request
# text repeats by chance. `json.dumps` writes its NUL characters as \u0000.
PLACEHOLDER_TOKEN = uuid.uuid4().hex
PLACEHOLDER_PATTERN = re.compile(r'"\\u0000vector:' + PLACEHOLDER_TOKEN + r':(\d+)\\u0000"')


def vector_placeholder(index: int) -> str:
    """Return the string that stands for vector `index` until `Reply.payload` puts its JSON text there."""
    return f"\x00vector:{PLACEHOLDER_TOKEN}:{index}\x00"


class RequestError(Exception):
    """A request that the protocol rejects; carries the ready error reply."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"HTTP {reply.status}")
        self.reply = reply


# ---------------------------------------------------------------------------
# Field validation shared by the protocols
# ---------------------------------------------------------------------------


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


FIELD_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda value: isinstance(value, str),
    "integer": _is_integer,
    "boolean": lambda value: isinstance(value, bool),
    "object": lambda value: isinstance(value, dict),
    "list": lambda value: isinstance(value, list),
    "string_list": _is_string_list,
    "string_or_list": lambda value: isinstance(value, str) or _is_string_list(value),
    "string_or_integer": lambda value: isinstance(value, str) or _is_integer(value),
    "any": lambda value: True,
}


@dataclass(frozen=True)
class FieldSpec:
    """The documented type of one body field: a key of `FIELD_CHECKS`, plus limits."""

    kind: str
    required: bool = False
    nullable: bool = False
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with a body: unknown, missing, type or value, on one field."""

    reason: str
    name: str
    value: Any = None
    spec: FieldSpec | None = None


def find_problem(body: dict[str, Any], fields: dict[str, FieldSpec]) -> Problem | None:
    """Return the first unknown, missing, wrongly typed or out-of-range field, or None."""
    for name, value in body.items():
        if name not in fields:
            return Problem("unknown", name, value)

    for name, spec in fields.items():
        if name not in body:
            if spec.required:
                return Problem("missing", name, None, spec)
            continue
        value = body[name]
        if value is None:
            if spec.nullable:
                continue
            return Problem("type", name, value, spec)
        if not FIELD_CHECKS[spec.kind](value):
            return Problem("type", name, value, spec)
        if spec.choices is not None:
            values = value if isinstance(value, list) else [value]
            if any(item not in spec.choices for item in values):
                return Problem("value", name, value, spec)
    return None


def json_type_name(value: Any) -> str:
    """Return the JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# ---------------------------------------------------------------------------
# Protocols
# ---------------------------------------------------------------------------


@dataclass
class EmbedJob:
    """What a protocol parsed from a valid request: texts, dimensions and output encoding."""

    texts: list[str]
    model: str
    dimensions: int
    encoding: str = "float"
    context: dict[str, Any] = field(default_factory=dict)


class Protocol:
    """One service's request checks, error shapes and response shape.

    `parse` returns an EmbedJob or raises RequestError in the service's error
    shape. `respond` turns encoded vectors into the service's response body.
    `indexed` is True when the response carries an `index` per vector.
    """

    name = ""
    indexed = False

    def __init__(self, server: ProtocolServer) -> None:
        self.server = server

    def error(self, status: int, message: str, **details: Any) -> Reply:
        raise NotImplementedError

    def check_key(self, headers: dict[str, str], query: dict[str, str]) -> None:
        """Raise RequestError with 401 when a key is required and missing or wrong."""
        required = self.server.require_key
        if required is False:
            return
        key = bearer_token(headers)
        if not key:
            raise RequestError(self.missing_key_reply())
        if isinstance(required, str) and key != required:
            raise RequestError(self.wrong_key_reply(key))

    def missing_key_reply(self) -> Reply:
        return self.error(401, "Missing API key: send the header 'Authorization: Bearer <key>'.")

    def wrong_key_reply(self, key: str) -> Reply:
        return self.error(401, f"Invalid API key {mask_key(key)}.")

    def invalid_json_reply(self, detail: str) -> Reply:
        return self.error(400, f"The request body is not valid JSON: {detail}.")

    def parse(self, body: Any, path: str) -> EmbedJob:
        raise NotImplementedError

    def respond(self, job: EmbedJob, vectors: list[Any]) -> Any:
        raise NotImplementedError

    def dimensions_for(self, model: str, requested: int | None) -> int:
        if requested is not None:
            return requested
        return self.server.dimensions.get(model, self.server.default_dimensions)


def bearer_token(headers: dict[str, str]) -> str:
    """Return the token of an `Authorization: Bearer` header, or "" when there is none."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return token.strip()


def mask_key(key: str) -> str:
    """Return a key with all but its last four characters masked, as services print it."""
    return "*" * max(0, len(key) - 4) + key[-4:]


def require_object(protocol: Protocol, body: Any) -> dict[str, Any]:
    """Return the body as a dict, or raise the protocol's error for a non-object body."""
    if not isinstance(body, dict):
        raise RequestError(protocol.error(400, f"The request body must be a JSON object, got {json_type_name(body)}."))
    return body


def require_positive(protocol: Protocol, name: str, value: int | None) -> int | None:
    """Return `value`, or raise the protocol's 400 error when it is below 1."""
    if value is not None and value < 1:
        raise RequestError(
            protocol.error(400, f"Invalid value for '{name}': {value}; it must be at least 1.", param=name)
        )
    return value


class JinaProtocol(Protocol):
    """Jina AI `POST /v1/embeddings`: pydantic validation, so 422 with a `detail` list."""

    name = "jina"
    indexed = True
    fields = {
        "model": FieldSpec("string", required=True),
        "input": FieldSpec("list", required=True),
        "task": FieldSpec(
            "string",
            nullable=True,
            choices=(
                "retrieval.query",
                "retrieval.passage",
                "separation",
                "classification",
                "text-matching",
            ),
        ),
        "dimensions": FieldSpec("integer", nullable=True),
        "late_chunking": FieldSpec("boolean", nullable=True),
        "embedding_type": FieldSpec("string_or_list", nullable=True, choices=("float", "base64", "binary", "ubinary")),
        "normalized": FieldSpec("boolean", nullable=True),
        "truncate": FieldSpec("boolean", nullable=True),
    }
    v3_only_fields = ("task", "dimensions", "late_chunking")

    def error(self, status: int, message: str, **details: Any) -> Reply:
        if status == 422:
            return Reply(
                status, {"detail": [details.get("item") or {"type": "value_error", "loc": ["body"], "msg": message}]}
            )
        return Reply(status, {"detail": message})

    def missing_key_reply(self) -> Reply:
        return Reply(401, {"detail": "Unauthorized: no API key was provided. Send 'Authorization: Bearer <key>'."})

    def wrong_key_reply(self, key: str) -> Reply:
        return Reply(401, {"detail": f"Unauthorized: the API key {mask_key(key)} is invalid."})

    def invalid_json_reply(self, detail: str) -> Reply:
        item = {
            "type": "json_invalid",
            "loc": ["body", 0],
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": detail},
        }
        return self.error(422, "JSON decode error", item=item)

    def validation_error(self, problem: Problem) -> Reply:
        value = problem.value
        if problem.reason == "unknown":
            error_type, message = "extra_forbidden", "Extra inputs are not permitted"
        elif problem.reason == "missing":
            error_type, message = "missing", "Field required"
        elif problem.reason == "value" and problem.spec and problem.spec.choices:
            allowed = ", ".join(repr(choice) for choice in problem.spec.choices)
            error_type, message = "literal_error", f"Input should be one of {allowed}"
        else:
            kind = problem.spec.kind if problem.spec else "string"
            pydantic_types = {"integer": "int_type", "boolean": "bool_type", "list": "list_type"}
            error_type, message = pydantic_types.get(kind, "string_type"), f"Input should be a valid {kind}"
        item = {"type": error_type, "loc": ["body", problem.name], "msg": message, "input": value}
        return self.error(422, message, item=item)

    def parse(self, body: Any, path: str) -> EmbedJob:
        body = require_object(self, body)
        model = body.get("model")
        if isinstance(model, str) and "v2" in model:
            for name in self.v3_only_fields:
                if name in body:
                    raise RequestError(self.validation_error(Problem("unknown", name, body[name])))

        problem = find_problem(body, self.fields)
        if problem is not None:
            raise RequestError(self.validation_error(problem))

        texts = self.input_texts(body["input"])
        dimensions = require_positive(self, "dimensions", body.get("dimensions"))
        requested = body.get("embedding_type") or "float"
        if isinstance(requested, list) and requested:
            types = requested
        else:
            types = [requested] if isinstance(requested, str) else ["float"]
        job = EmbedJob(texts, body["model"], self.dimensions_for(body["model"], dimensions), types[0])
        if isinstance(requested, list):
            # NOTE: a list of types returns each embedding as an object keyed by type; the
            # exact shape Jina uses for a list is unverified.
            job.context["types"] = types
        return job

    def input_texts(self, items: list[Any]) -> list[str]:
        texts: list[str] = []
        for position, item in enumerate(items):
            if isinstance(item, dict) and set(item) == {"text"} and isinstance(item["text"], str):
                texts.append(item["text"])
            elif isinstance(item, str):
                texts.append(item)
            else:
                detail = {
                    "type": "string_type",
                    "loc": ["body", "input", position],
                    "msg": "Input should be a valid string or an object {'text': string}",
                    "input": item,
                }
                raise RequestError(self.error(422, detail["msg"], item=detail))
        return texts

    def respond(self, job: EmbedJob, vectors: list[Any]) -> Any:
        tokens = count_tokens(job.texts)
        if "types" in job.context:
            extra = job.context["extra_types"]
            vectors = [
                {job.encoding: vector, **{name: values[index] for name, values in extra.items()}}
                for index, vector in enumerate(vectors)
            ]
        return {
            "model": job.model,
            "object": "list",
            "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
            "data": [
                {"object": "embedding", "index": index, "embedding": vector} for index, vector in enumerate(vectors)
            ],
        }


class OpenAIProtocol(Protocol):
    """OpenAI `POST /v1/embeddings`, also under any path prefix for compatible servers."""

    name = "openai"
    indexed = True
    fields = {
        "model": FieldSpec("string", required=True),
        "input": FieldSpec("string_or_list", required=True),
        "dimensions": FieldSpec("integer"),
        "encoding_format": FieldSpec("string", choices=("float", "base64")),
        "user": FieldSpec("string"),
    }
    # Models released before `dimensions` existed reject it.
    fixed_dimension_models = ("text-embedding-ada-002",)

    def error(self, status: int, message: str, **details: Any) -> Reply:
        error_type = {401: "invalid_request_error", 429: "requests", 500: "server_error", 503: "server_error"}
        body = {
            "error": {
                "message": message,
                "type": details.get("type", error_type.get(status, "invalid_request_error")),
                "param": details.get("param"),
                "code": details.get("code"),
            }
        }
        return Reply(status, body)

    def missing_key_reply(self) -> Reply:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        return self.error(401, message)

    def wrong_key_reply(self, key: str) -> Reply:
        return self.error(401, f"Incorrect API key provided: {mask_key(key)}.", code="invalid_api_key")

    def invalid_json_reply(self, detail: str) -> Reply:
        message = (
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly.)"
        )
        return self.error(400, message)

    def validation_error(self, problem: Problem) -> Reply:
        if problem.reason == "unknown":
            return self.error(400, f"Unrecognized request argument supplied: {problem.name}")
        if problem.reason == "missing" and problem.name == "model":
            return self.error(400, "you must provide a model parameter")
        if problem.reason == "missing":
            return self.error(
                400,
                f"Missing required parameter: '{problem.name}'.",
                param=problem.name,
                code="missing_required_parameter",
            )
        if problem.reason == "value":
            message = (
                f"Invalid value for '{problem.name}': {problem.value!r}. Supported values are: {problem.spec.choices}."
            )
            return self.error(400, message, param=problem.name, code="invalid_value")
        expected = problem.spec.kind.replace("_", " ") if problem.spec else "value"
        message = (
            f"Invalid type for '{problem.name}': expected {expected}, but got {json_type_name(problem.value)} instead."
        )
        return self.error(400, message, param=problem.name, code="invalid_type")

    def parse(self, body: Any, path: str) -> EmbedJob:
        body = require_object(self, body)
        problem = find_problem(body, self.fields)
        if problem is not None:
            raise RequestError(self.validation_error(problem))

        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        if not texts:
            raise RequestError(self.error(400, "'$.input' is invalid: the list must not be empty.", param="input"))
        if any(text == "" for text in texts):
            raise RequestError(
                self.error(400, "'$.input' is invalid: an input string must not be empty.", param="input")
            )

        dimensions = require_positive(self, "dimensions", body.get("dimensions"))
        if dimensions is not None and body["model"] in self.fixed_dimension_models:
            raise RequestError(
                self.error(400, "This model does not support specifying dimensions.", param="dimensions")
            )
        encoding = body.get("encoding_format", "float")
        return EmbedJob(texts, body["model"], self.dimensions_for(body["model"], dimensions), encoding)

    def respond(self, job: EmbedJob, vectors: list[Any]) -> Any:
        tokens = count_tokens(job.texts)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": vector} for index, vector in enumerate(vectors)
            ],
            "model": job.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


class VoyageProtocol(Protocol):
    """Voyage AI `POST /v1/embeddings`: errors are `{"detail": message}`.

    NOTE: Voyage documents 400 for invalid bodies, and this server also returns
    400 for unknown fields; whether the real service ignores them is unverified.
    """

    name = "voyage"
    indexed = True
    fields = {
        "input": FieldSpec("string_or_list", required=True),
        "model": FieldSpec("string", required=True),
        "input_type": FieldSpec("string", nullable=True, choices=("query", "document")),
        "truncation": FieldSpec("boolean"),
        "output_dimension": FieldSpec("integer", nullable=True),
        "output_dtype": FieldSpec("string", choices=("float", "int8", "uint8", "binary", "ubinary")),
        "encoding_format": FieldSpec("string", nullable=True, choices=("base64",)),
    }

    def error(self, status: int, message: str, **details: Any) -> Reply:
        return Reply(status, {"detail": message})

    def missing_key_reply(self) -> Reply:
        return self.error(401, "No API key provided. Send the header 'Authorization: Bearer <key>'.")

    def wrong_key_reply(self, key: str) -> Reply:
        return self.error(401, "Provided API key is invalid.")

    def validation_error(self, problem: Problem) -> Reply:
        messages = {
            "unknown": f"Request body has an unexpected field '{problem.name}'.",
            "missing": f"Request body is missing the required field '{problem.name}'.",
            "type": f"Field '{problem.name}' has an invalid type: {json_type_name(problem.value)}.",
        }
        if problem.reason == "value" and problem.spec:
            allowed = ", ".join(problem.spec.choices or ())
            message = f"Value {problem.value!r} of field '{problem.name}' is invalid. Supported values: {allowed}."
        else:
            message = messages[problem.reason]
        return self.error(400, message)

    def parse(self, body: Any, path: str) -> EmbedJob:
        body = require_object(self, body)
        problem = find_problem(body, self.fields)
        if problem is not None:
            raise RequestError(self.validation_error(problem))

        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        limit = self.server.voyage_max_inputs
        if len(texts) > limit:
            message = (
                f"Request to model '{body['model']}' failed. The max allowed batch size is {limit}, "
                f"but {len(texts)} inputs were given."
            )
            raise RequestError(self.error(400, message))

        dimensions = require_positive(self, "output_dimension", body.get("output_dimension"))
        encoding = body.get("output_dtype", "float")
        if body.get("encoding_format") == "base64":
            if encoding != "float":
                raise RequestError(
                    self.error(400, "encoding_format 'base64' is only supported with output_dtype 'float'.")
                )
            encoding = "base64"
        return EmbedJob(texts, body["model"], self.dimensions_for(body["model"], dimensions), encoding)

    def respond(self, job: EmbedJob, vectors: list[Any]) -> Any:
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "embedding": vector, "index": index} for index, vector in enumerate(vectors)
            ],
            "model": job.model,
            "usage": {"total_tokens": count_tokens(job.texts)},
        }


class OllamaProtocol(Protocol):
    """Ollama `POST /api/embed`: errors are `{"error": message}`, messages in Go's wording.

    NOTE: the real Ollama decodes with Go's encoding/json and ignores unknown
    fields. This server rejects them (set `server.strict = False` to ignore them)
    so that a misspelled field fails a test.
    """

    name = "ollama"
    fields = {
        "model": FieldSpec("string", required=True),
        "input": FieldSpec("string_or_list", required=True),
        "truncate": FieldSpec("boolean"),
        "keep_alive": FieldSpec("string_or_integer"),
        "dimensions": FieldSpec("integer"),
        "options": FieldSpec("object"),
    }
    go_types = {"string": "string", "integer": "int", "boolean": "bool", "object": "map[string]interface {}"}

    def error(self, status: int, message: str, **details: Any) -> Reply:
        return Reply(status, {"error": message})

    def missing_key_reply(self) -> Reply:
        return self.error(401, "unauthorized")

    def wrong_key_reply(self, key: str) -> Reply:
        return self.error(401, "unauthorized")

    def invalid_json_reply(self, detail: str) -> Reply:
        return self.error(400, f"invalid character in request body: {detail}")

    def validation_error(self, problem: Problem) -> Reply:
        if problem.reason == "unknown":
            return self.error(400, f'json: unknown field "{problem.name}"')
        if problem.reason == "missing":
            return self.error(400, f"{problem.name} is required")
        go_type = self.go_types.get(problem.spec.kind if problem.spec else "", "string")
        source = json_type_name(problem.value)
        return self.error(
            400, f"json: cannot unmarshal {source} into Go struct field EmbedRequest.{problem.name} of type {go_type}"
        )

    def parse(self, body: Any, path: str) -> EmbedJob:
        body = require_object(self, body)
        fields = self.fields if self.server.strict else {**{name: FieldSpec("any") for name in body}, **self.fields}
        problem = find_problem(body, fields)
        if problem is not None:
            raise RequestError(self.validation_error(problem))

        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        dimensions = require_positive(self, "dimensions", body.get("dimensions"))
        return EmbedJob(texts, body["model"], self.dimensions_for(body["model"], dimensions))

    def respond(self, job: EmbedJob, vectors: list[Any]) -> Any:
        return {
            "model": job.model,
            "embeddings": vectors,
            "total_duration": 14_143_917,
            "load_duration": 1_019_500,
            "prompt_eval_count": count_tokens(job.texts),
        }


class TEIProtocol(Protocol):
    """Hugging Face text-embeddings-inference `POST /embed`: a bare array of arrays.

    Errors are `{"error": message, "error_type": kind}`. TEI (1.x) returns 401
    with an empty body when its `--api-key` does not match.
    NOTE: TEI's serde structs ignore unknown fields. This server rejects them with
    422 unless `server.strict` is False, so that a misspelled field fails a test.
    """

    name = "tei"
    fields = {
        "inputs": FieldSpec("string_or_list", required=True),
        "normalize": FieldSpec("boolean"),
        "truncate": FieldSpec("boolean", nullable=True),
        "truncation_direction": FieldSpec("string", choices=("Left", "Right")),
        "prompt_name": FieldSpec("string", nullable=True),
        "dimensions": FieldSpec("integer", nullable=True),
    }

    def error(self, status: int, message: str, **details: Any) -> Reply:
        return Reply(status, {"error": message, "error_type": details.get("error_type", "Validation")})

    def missing_key_reply(self) -> Reply:
        return Reply(401, raw=b"")

    def wrong_key_reply(self, key: str) -> Reply:
        return Reply(401, raw=b"")

    def invalid_json_reply(self, detail: str) -> Reply:
        return self.error(422, f"Failed to parse the request body as JSON: {detail}")

    def validation_error(self, problem: Problem) -> Reply:
        prefix = "Failed to deserialize the JSON body into the target type"
        if problem.reason == "unknown":
            return self.error(
                422, f"{prefix}: unknown field `{problem.name}`, expected one of {', '.join(self.fields)}"
            )
        if problem.reason == "missing":
            return self.error(422, f"{prefix}: missing field `{problem.name}`")
        return self.error(422, f"{prefix}: {problem.name}: invalid value {json.dumps(problem.value)}")

    def parse(self, body: Any, path: str) -> EmbedJob:
        body = require_object(self, body)
        fields = self.fields if self.server.strict else {**{name: FieldSpec("any") for name in body}, **self.fields}
        problem = find_problem(body, fields)
        if problem is not None:
            raise RequestError(self.validation_error(problem))

        texts = [body["inputs"]] if isinstance(body["inputs"], str) else body["inputs"]
        limit = self.server.tei_max_client_batch_size
        if len(texts) > limit:
            raise RequestError(self.error(422, f"batch size {len(texts)} > maximum allowed batch size {limit}"))
        if not texts:
            raise RequestError(self.error(422, "`inputs` cannot be empty", error_type="Empty"))

        dimensions = require_positive(self, "dimensions", body.get("dimensions"))
        model = self.server.tei_model_id
        return EmbedJob(texts, model, self.dimensions_for(model, dimensions))

    def respond(self, job: EmbedJob, vectors: list[Any]) -> Any:
        return vectors

    def info(self) -> dict[str, Any]:
        return {
            "model_id": self.server.tei_model_id,
            "model_sha": None,
            "model_dtype": "float32",
            "model_type": {"embedding": {"pooling": "mean"}},
            "max_concurrent_requests": 512,
            "max_input_length": 512,
            "max_batch_tokens": 16384,
            "max_batch_requests": None,
            "max_client_batch_size": self.server.tei_max_client_batch_size,
            "auto_truncate": False,
            "tokenization_workers": 2,
            "version": "1.5.0",
        }


class CohereProtocol(Protocol):
    """Cohere `POST /v2/embed`: errors are `{"id": ..., "message": message}`."""

    name = "cohere"
    fields = {
        "model": FieldSpec("string", required=True),
        "texts": FieldSpec("string_list", required=True),
        "input_type": FieldSpec(
            "string", required=True, choices=("search_document", "search_query", "classification", "clustering")
        ),
        "embedding_types": FieldSpec("string_list", choices=("float", "int8", "uint8", "binary", "ubinary", "base64")),
        "truncate": FieldSpec("string", choices=("NONE", "START", "END")),
        "output_dimension": FieldSpec("integer", nullable=True),
        "max_tokens": FieldSpec("integer", nullable=True),
    }

    def error(self, status: int, message: str, **details: Any) -> Reply:
        return Reply(status, {"id": str(uuid.uuid4()), "message": message})

    def missing_key_reply(self) -> Reply:
        return self.error(401, "no api key supplied")

    def wrong_key_reply(self, key: str) -> Reply:
        return self.error(401, "invalid api token")

    def invalid_json_reply(self, detail: str) -> Reply:
        return self.error(400, f"invalid request: could not parse the JSON body: {detail}")

    def validation_error(self, problem: Problem) -> Reply:
        if problem.reason == "unknown":
            return self.error(400, f"invalid request: unknown field '{problem.name}'")
        if problem.reason == "missing":
            return self.error(400, f"invalid request: {problem.name} is required")
        if problem.reason == "value" and problem.spec:
            allowed = ", ".join(problem.spec.choices or ())
            return self.error(400, f"invalid request: {problem.name} must be one of {allowed}, got {problem.value!r}")
        return self.error(400, f"invalid request: {problem.name} has an invalid type {json_type_name(problem.value)}")

    def parse(self, body: Any, path: str) -> EmbedJob:
        body = require_object(self, body)
        problem = find_problem(body, self.fields)
        if problem is not None:
            raise RequestError(self.validation_error(problem))

        texts = body["texts"]
        limit = self.server.cohere_max_texts
        if len(texts) > limit:
            raise RequestError(
                self.error(
                    400, f"invalid request: total number of texts must be at most {limit} - received {len(texts)}"
                )
            )

        types = body.get("embedding_types") or ["float"]
        dimensions = require_positive(self, "output_dimension", body.get("output_dimension"))
        job = EmbedJob(texts, body["model"], self.dimensions_for(body["model"], dimensions), types[0])
        job.context["types"] = types
        return job

    def respond(self, job: EmbedJob, vectors: list[Any]) -> Any:
        tokens = count_tokens(job.texts)
        return {
            "id": str(uuid.uuid4()),
            "embeddings": {job.encoding: vectors, **job.context.get("extra_types", {})},
            "texts": job.texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
            "response_type": "embeddings_by_type",
        }


class GeminiProtocol(Protocol):
    """Gemini `POST /v1beta/models/{model}:batchEmbedContents` with the `x-goog-api-key` header.

    Errors are `{"error": {"code", "message", "status"}}`. As the real API does,
    a missing key gets 403 PERMISSION_DENIED and a wrong key 400 INVALID_ARGUMENT,
    not 401. Field names are accepted in lowerCamelCase and snake_case, as in
    protobuf JSON.
    """

    name = "gemini"
    statuses = {
        400: "INVALID_ARGUMENT",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        503: "UNAVAILABLE",
    }
    request_fields = {
        "model": FieldSpec("string", required=True),
        "content": FieldSpec("object", required=True),
        "taskType": FieldSpec(
            "string",
            choices=(
                "TASK_TYPE_UNSPECIFIED",
                "RETRIEVAL_QUERY",
                "RETRIEVAL_DOCUMENT",
                "SEMANTIC_SIMILARITY",
                "CLASSIFICATION",
                "CLUSTERING",
                "QUESTION_ANSWERING",
                "FACT_VERIFICATION",
                "CODE_RETRIEVAL_QUERY",
            ),
        ),
        "title": FieldSpec("string"),
        "outputDimensionality": FieldSpec("integer"),
    }
    snake_names = {"task_type": "taskType", "output_dimensionality": "outputDimensionality"}

    def error(self, status: int, message: str, **details: Any) -> Reply:
        return Reply(
            status, {"error": {"code": status, "message": message, "status": self.statuses.get(status, "UNKNOWN")}}
        )

    def check_key(self, headers: dict[str, str], query: dict[str, str]) -> None:
        required = self.server.require_key
        if required is False:
            return
        key = headers.get("x-goog-api-key") or query.get("key", "")
        if not key:
            message = (
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API."
            )
            raise RequestError(self.error(403, message))
        if isinstance(required, str) and key != required:
            raise RequestError(self.error(400, "API key not valid. Please pass a valid API key."))

    def invalid_json_reply(self, detail: str) -> Reply:
        return self.error(400, f"Invalid JSON payload received. {detail}")

    def unknown_field(self, name: str, where: str) -> RequestError:
        location = f" at '{where}'" if where else ""
        message = f'Invalid JSON payload received. Unknown name "{name}"{location}: Cannot find field.'
        return RequestError(self.error(400, message))

    def parse(self, body: Any, path: str) -> EmbedJob:
        body = require_object(self, body)
        for name in body:
            if name != "requests":
                raise self.unknown_field(name, "")
        items = body.get("requests")
        if not isinstance(items, list) or not items:
            raise RequestError(self.error(400, "* BatchEmbedContentsRequest.requests: requests must not be empty\n"))

        limit = self.server.gemini_max_requests
        if len(items) > limit:
            raise RequestError(
                self.error(400, f"* BatchEmbedContentsRequest.requests: at most {limit} requests can be in one batch\n")
            )

        url_model = path.rsplit("/models/", 1)[1].split(":", 1)[0]
        texts: list[str] = []
        dimensions: set[int | None] = set()
        for position, item in enumerate(items):
            text, requested = self.parse_item(item, f"requests[{position}]", url_model)
            texts.append(text)
            dimensions.add(requested)

        if len(dimensions) > 1:
            raise RequestError(
                self.error(400, "* BatchEmbedContentsRequest: all requests must use the same outputDimensionality\n")
            )
        requested_dimensions = require_positive(self, "outputDimensionality", dimensions.pop())
        return EmbedJob(texts, url_model, self.dimensions_for(url_model, requested_dimensions))

    def parse_item(self, item: Any, where: str, url_model: str) -> tuple[str, int | None]:
        """Check one EmbedContentRequest and return its text and requested dimensions."""
        if not isinstance(item, dict):
            raise RequestError(
                self.error(
                    400,
                    f"Invalid value at '{where}' (type.googleapis.com/google.ai.generativelanguage.v1beta."
                    f"EmbedContentRequest), {json.dumps(item)}",
                )
            )
        item = {self.snake_names.get(name, name): value for name, value in item.items()}

        problem = find_problem(item, self.request_fields)
        if problem is not None and problem.reason == "unknown":
            raise self.unknown_field(problem.name, where)
        if problem is not None:
            kind = problem.spec.kind if problem.spec else "field"
            message = f"Invalid value at '{where}.{problem.name}' ({kind}), {json.dumps(problem.value)}"
            if problem.reason == "missing":
                message = f"* BatchEmbedContentsRequest.{where}.{problem.name}: field is required\n"
            raise RequestError(self.error(400, message))

        if item["model"] != f"models/{url_model}":
            message = (
                f"* BatchEmbedContentsRequest.{where}.model: the model {item['model']!r} must match "
                f"the model in the URL, models/{url_model}\n"
            )
            raise RequestError(self.error(400, message))
        return self.content_text(item["content"], f"{where}.content"), item.get("outputDimensionality")

    def content_text(self, content: dict[str, Any], where: str) -> str:
        """Return the text of a Content: its text parts joined by a space."""
        for name in content:
            if name not in ("parts", "role"):
                raise self.unknown_field(name, where)
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise RequestError(
                self.error(400, f"* BatchEmbedContentsRequest.{where}.parts: contents must not be empty\n")
            )

        texts: list[str] = []
        for position, part in enumerate(parts):
            if not isinstance(part, dict) or not isinstance(part.get("text"), str):
                raise RequestError(
                    self.error(400, f"Invalid value at '{where}.parts[{position}]': each part needs a string 'text'")
                )
            for name in part:
                if name != "text":
                    raise self.unknown_field(name, f"{where}.parts[{position}]")
            texts.append(part["text"])
        return " ".join(texts)

    def respond(self, job: EmbedJob, vectors: list[Any]) -> Any:
        return {"embeddings": [{"values": vector} for vector in vectors]}


CONTROL_PATHS = ("/_stats", "/_reset")
GEMINI_PATH = re.compile(r"^(/[^/]+)?/models/[^/:]+:batchEmbedContents$")
FLAVOR_PROTOCOLS: dict[str, type[Protocol]] = {"jina": JinaProtocol, "openai": OpenAIProtocol, "voyage": VoyageProtocol}


def texts_of(path: str, body: Any) -> list[str]:
    """Return the input texts of a recorded body, in order, for any of the protocols."""
    if not isinstance(body, dict):
        return []
    if path.endswith(":batchEmbedContents"):
        texts: list[str] = []
        for item in body.get("requests") or []:
            parts = item.get("content", {}).get("parts", []) if isinstance(item, dict) else []
            texts.append(" ".join(part.get("text", "") for part in parts if isinstance(part, dict)))
        return texts

    value = body.get("texts", body.get("inputs", body.get("input")))
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        return []
    return [
        item["text"] if isinstance(item, dict) and "text" in item else item
        for item in value
        if isinstance(item, (str, dict))
    ]


# ---------------------------------------------------------------------------
# HTTP handling
# ---------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    """Read one request, record it, apply faults and write the protocol's response."""

    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes. Without TCP_NODELAY, Nagle's algorithm and
        # delayed ACKs held the body back by about 40 ms on kept-alive connections here.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self.handle_request()

    def do_POST(self) -> None:
        self.handle_request()

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def handle_request(self) -> None:
        owner = self.server.owner
        raw_body = self.read_body()
        path, _, query_string = self.path.partition("?")
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            body = json.loads(raw_body) if raw_body else None
            json_error = "" if raw_body else "the body is empty"
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            body, json_error = None, str(error)

        if owner.control_routes and path in CONTROL_PATHS:
            self.write_reply(owner._control_reply(self.command, path, body))
            return

        request = RecordedRequest(self.command, path, headers, body, time.monotonic())
        owner._record(request)

        if owner.latency > 0:
            owner._stopping.wait(owner.latency)

        fault = owner._take_fault(path)
        reply = owner._dispatch(self.command, path, headers, parse_query(query_string), body, json_error, fault)
        owner._record_response(RecordedResponse(request, reply.status if reply is not None else 0))
        if reply is None:
            self.drop_connection()
            return
        self.write_reply(reply)

    def drop_connection(self) -> None:
        """Close the socket without writing a status line."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError as error:
            logger.debug("shutdown of a dropped connection failed: %s", error)

    def write_reply(self, reply: Reply) -> None:
        payload = reply.payload()
        self.send_response(reply.status)
        if reply.raw is None or payload:
            self.send_header("Content-Type", "application/json")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def parse_query(query_string: str) -> dict[str, str]:
    pairs = (item.partition("=") for item in query_string.split("&") if item)
    return {name: value for name, _, value in pairs}


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The default backlog of 5 can refuse a burst of concurrent connections.
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], owner: ProtocolServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


class ProtocolServer:
    """A threaded HTTP server on 127.0.0.1 that speaks seven embedding protocols.

    `flavor` picks the protocol of `POST .../embeddings`: "jina", "openai" or
    "voyage". `require_key` is False (no check), True (any non-empty key) or a
    string that the key must equal. `strict=False` makes the Ollama and TEI
    routes ignore unknown fields, as the real servers do. `control_routes=True`
    adds `GET /_stats` and `POST /_reset` (see `_control_reply`) for a client in
    another process. Every public attribute can be changed while the server
    runs.
    """

    def __init__(
        self,
        flavor: str = "openai",
        *,
        port: int = 0,
        require_key: bool | str = False,
        latency: float = 0.0,
        seed: int = 0,
        strict: bool = True,
        control_routes: bool = False,
    ) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"unknown flavor {flavor!r}; expected one of {', '.join(FLAVORS)}")
        self.flavor = flavor
        self.port = port
        self.require_key: bool | str = require_key
        self.latency = latency
        self.seed = seed
        self.strict = strict
        self.control_routes = control_routes
        self.dimensions: dict[str, int] = dict(DEFAULT_DIMENSIONS)
        self.default_dimensions = 64
        self.tei_model_id = "BAAI/bge-small-en-v1.5"
        self.tei_max_client_batch_size = 32
        self.voyage_max_inputs = 128
        self.cohere_max_texts = 96
        self.gemini_max_requests = 100

        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._responses: list[RecordedResponse] = []
        self._queued_faults: list[Fault] = []
        self._fault_rates: list[Fault] = []
        self._random = random.Random(seed)
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._protocols = {
            "flavor": FLAVOR_PROTOCOLS[flavor](self),
            "ollama": OllamaProtocol(self),
            "tei": TEIProtocol(self),
            "cohere": CohereProtocol(self),
            "gemini": GeminiProtocol(self),
        }

    # Lifecycle

    def start(self) -> ProtocolServer:
        """Bind 127.0.0.1 (port 0 picks a free port) and serve in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError(f"the server already runs at {self.base_url}; call stop() first")
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name=f"protocol-server-{self.port}", daemon=True
        )
        self._thread.start()
        logger.info("protocol server (%s) listening on %s", self.flavor, self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; handlers still sleeping wake up and exit."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None
        logger.info("protocol server on port %d stopped", self.port)

    def __enter__(self) -> ProtocolServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # Records

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the recorded requests, in order of arrival."""
        with self._lock:
            return list(self._requests)

    def count(self, path: str | None = None) -> int:
        """Return how many requests arrived, all of them or those with this exact path."""
        return sum(1 for request in self.requests if path is None or request.path == path)

    @property
    def responses(self) -> list[RecordedResponse]:
        """A copy of the recorded responses, in the order they were built."""
        with self._lock:
            return list(self._responses)

    def texts_seen(self) -> list[str]:
        """Return every input text of every recorded request, in order of arrival."""
        texts: list[str] = []
        for request in self.requests:
            texts.extend(texts_of(request.path, request.json_body))
        return texts

    def reset(self) -> None:
        """Clear the records, queued faults and fault rates, and reseed the random faults."""
        with self._lock:
            self._requests.clear()
            self._responses.clear()
            self._queued_faults.clear()
            self._fault_rates.clear()
            self._random = random.Random(self.seed)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _record_response(self, response: RecordedResponse) -> None:
        with self._lock:
            self._responses.append(response)

    # Control routes

    def stats(self) -> dict[str, Any]:
        """Return the records as JSON-ready data: request count, each response's status and texts, CPU time.

        `cpu_seconds` is `time.process_time()` of the server's process, so a
        client in another process can subtract two readings.
        """
        responses = [
            {
                "status": response.status,
                "path": response.request.path,
                "texts": texts_of(response.request.path, response.request.json_body),
            }
            for response in self.responses
        ]
        return {"requests": len(self.requests), "responses": responses, "cpu_seconds": time.process_time()}

    def _control_reply(self, method: str, path: str, body: Any) -> Reply:
        """Serve the control routes, which are never recorded and never delayed.

        `GET /_stats` returns `stats()`. `POST /_reset` calls `reset()` and then,
        for a body such as `{"rate_429": 0.1, "retry_after": 0.1}`, sets that
        rate of 429 responses.
        """
        if (method, path) == ("GET", "/_stats"):
            return Reply(200, self.stats())
        if (method, path) != ("POST", "/_reset"):
            logger.warning("rejected %s %s with HTTP 405", method, path)
            return Reply(405, {"error": f"{method} is not allowed on {path}; use GET /_stats or POST /_reset"})

        options = body if isinstance(body, dict) else {}
        rate = options.get("rate_429", 0.0)
        retry_after = options.get("retry_after", 1)
        if not isinstance(rate, (int, float)) or not isinstance(retry_after, (int, float, type(None))):
            message = f"rate_429 and retry_after must be numbers, got {rate!r} and {retry_after!r}"
            logger.warning("rejected POST /_reset with HTTP 400: %s", message)
            return Reply(400, {"error": message})

        self.reset()
        if rate > 0:
            try:
                self.set_rate_429(rate, retry_after=retry_after)
            except ValueError as error:
                logger.warning("rejected POST /_reset with HTTP 400: %s", error)
                return Reply(400, {"error": str(error)})
        return Reply(200, {"reset": True, "rate_429": rate, "retry_after": retry_after})

    # Faults

    def add_fault(self, kind: str, count: int = 1, *, path: str | None = None, **params: Any) -> None:
        """Queue a fault for the next `count` requests (with this exact path, if given).

        Parameters by kind:
        - "429", "500", "503": `retry_after` in seconds (default 1 for 429, else
          none; None leaves the header out), `http_date=True` to send an HTTP date.
        - "slow": `delay` in seconds (default 1).
        - "wrong_dimension", "nan", "zero_vector": `index`, the vector to break (default 0).
        Faults queue in order, and each request consumes at most one.
        """
        validate_fault_kind(kind)
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        with self._lock:
            self._queued_faults.append(Fault(kind, params, path, remaining=count))

    def set_fault_rate(self, kind: str, probability: float, *, path: str | None = None, **params: Any) -> None:
        """Give each request a `probability` chance of fault `kind`, drawn from a seeded RNG.

        Queued faults from `add_fault` go first. Rates are checked in the order
        they were set, so their total should stay at or below 1.
        """
        validate_fault_kind(kind)
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be between 0 and 1, got {probability}")
        with self._lock:
            self._fault_rates.append(Fault(kind, params, path, probability=probability))

    def set_rate_429(self, fraction: float, retry_after: float | None = 1) -> None:
        """Respond with 429 and this Retry-After to a seeded-random `fraction` of requests.

        `retry_after` is in seconds, None leaves the header out, and a fraction
        is sent as given (see `retry_after_header`).
        """
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after must be at least 0 seconds, got {retry_after}")
        self.set_fault_rate("429", fraction, retry_after=retry_after)

    def clear_faults(self) -> None:
        with self._lock:
            self._queued_faults.clear()
            self._fault_rates.clear()

    def pending_faults(self) -> int:
        """Return how many queued fault uses are left."""
        with self._lock:
            return sum(fault.remaining for fault in self._queued_faults)

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._queued_faults:
                if fault.matches(path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._queued_faults.remove(fault)
                    return fault

            draw = self._random.random()
            threshold = 0.0
            for fault in self._fault_rates:
                if not fault.matches(path):
                    continue
                threshold += fault.probability
                if draw < threshold:
                    return fault
        return None

    # Dispatch

    def _route(self, method: str, path: str) -> Protocol | None:
        if method == "POST" and path == "/api/embed":
            return self._protocols["ollama"]
        if (method, path) in (("POST", "/embed"), ("GET", "/info")):
            return self._protocols["tei"]
        if method == "POST" and path == "/v2/embed":
            return self._protocols["cohere"]
        if method == "POST" and GEMINI_PATH.match(path):
            return self._protocols["gemini"]
        if method == "POST" and path.endswith("/embeddings"):
            return self._protocols["flavor"]
        return None

    def _dispatch(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        query: dict[str, str],
        body: Any,
        json_error: str,
        fault: Fault | None,
    ) -> Reply | None:
        """Build the reply for one request; None means drop the connection."""
        protocol = self._route(method, path)
        if protocol is None:
            return Reply(404, {"error": f"no route for {method} {path}; see the protocol_server module docstring"})

        early = self._early_fault_reply(protocol, fault)
        if early is not None or (fault is not None and fault.kind == "drop"):
            return early

        try:
            protocol.check_key(headers, query)
            if method == "GET":
                return (
                    Reply(200, protocol.info())
                    if isinstance(protocol, TEIProtocol)
                    else protocol.error(404, "not found")
                )
            if body is None:
                raise RequestError(protocol.invalid_json_reply(json_error))
            job = protocol.parse(body, path)
        except RequestError as error:
            logger.debug("rejected %s %s with HTTP %d: %s", method, path, error.reply.status, error.reply.body)
            return error.reply
        return self._embed_reply(protocol, job, fault)

    def _early_fault_reply(self, protocol: Protocol, fault: Fault | None) -> Reply | None:
        """Return the reply of a fault that replaces the response: 429, 500, 503; sleep for "slow"."""
        if fault is None:
            return None
        if fault.kind == "slow":
            self._stopping.wait(float(fault.params.get("delay", 1.0)))
            return None
        if fault.kind not in ("429", "500", "503"):
            return None

        status = int(fault.kind)
        messages = {
            429: "Rate limit exceeded; retry after the time in the Retry-After header.",
            500: "The server had an error while processing your request.",
            503: "The service is temporarily overloaded; retry later.",
        }
        reply = protocol.error(
            status,
            messages[status],
            error_type="Backend" if status == 500 else "Overloaded",
            code="rate_limit_exceeded" if status == 429 else None,
        )
        retry_after = fault.params.get("retry_after", 1 if status == 429 else None)
        if retry_after is not None:
            reply.headers["Retry-After"] = retry_after_header(retry_after, bool(fault.params.get("http_date")))
        return reply

    def _embed_reply(self, protocol: Protocol, job: EmbedJob, fault: Fault | None) -> Reply:
        kind = fault.kind if fault is not None else ""
        if job.encoding == "float" and kind in ("", "slow", "shuffled") and "types" not in job.context:
            return self._float_reply(protocol, job, kind)

        vectors = [embedding_for(text, job.dimensions) for text in job.texts]
        vectors = break_vectors(vectors, kind, fault.params if fault is not None else {})

        encoding = job.encoding
        if kind == "wrong_encoding":
            encoding = "float" if encoding != "float" else "base64"
        encoded = [encode_vector(vector, encoding) for vector in vectors]
        if "types" in job.context:
            job.context["extra_types"] = {
                name: [encode_vector(vector, name) for vector in vectors] for name in job.context["types"][1:]
            }

        body = protocol.respond(job, encoded)
        if kind == "shuffled" and protocol.indexed:
            self._shuffle_data(body)
        if kind == "malformed_json":
            text = json.dumps(body)
            return Reply(200, raw=text[: max(1, len(text) // 2)].encode("utf-8"))
        return Reply(200, body)

    def _float_reply(self, protocol: Protocol, job: EmbedJob, kind: str) -> Reply:
        """Build a reply of intact float vectors from their cached JSON text.

        The bytes are the same as those of `json.dumps` on the lists. Encoding
        the 64 floats of one vector took 30 to 50 microseconds on a 2-CPU AMD
        EPYC machine, enough to make the server the bottleneck of
        `benchmarks/bench_remote.py`.
        """
        placeholders = [vector_placeholder(index) for index in range(len(job.texts))]
        body = protocol.respond(job, placeholders)
        if kind == "shuffled" and protocol.indexed:
            self._shuffle_data(body)
        fragments = [embedding_json(text, job.dimensions) for text in job.texts]
        return Reply(200, body, fragments=fragments)

    def _shuffle_data(self, body: dict[str, Any]) -> None:
        """Reorder `data` items, keeping each item's own correct `index`, never in order when n > 1."""
        items = body["data"]
        if len(items) < 2:
            return
        with self._lock:
            self._random.shuffle(items)
        if all(item["index"] == position for position, item in enumerate(items)):
            items.reverse()


def break_vectors(vectors: list[list[float]], kind: str, params: dict[str, Any]) -> list[list[float]]:
    """Apply a vector fault: fewer_vectors, wrong_dimension, nan or zero_vector; else unchanged."""
    if not vectors or kind not in ("fewer_vectors", "wrong_dimension", "nan", "zero_vector"):
        return vectors
    if kind == "fewer_vectors":
        return vectors[:-1]

    index = min(int(params.get("index", 0)), len(vectors) - 1)
    broken = list(vectors[index])
    if kind == "wrong_dimension":
        broken = broken[:-1] if len(broken) > 1 else broken + [0.5]
    elif kind == "nan":
        broken[0] = math.nan
    else:
        broken = [0.0] * len(broken)
    return vectors[:index] + [broken] + vectors[index + 1 :]


def retry_after_header(seconds: float, http_date: bool) -> str:
    """Format Retry-After as seconds, or as an HTTP date that many seconds from now.

    Whole seconds are sent as an integer, as RFC 9110 defines the header.
    Fractional seconds are sent as given (0.1 gives "0.1"), which RFC 9110 does
    not allow but lets tests and benchmarks use short waits with clients that
    accept them.
    """
    if seconds < 0:
        raise ValueError(f"retry_after must be at least 0 seconds, got {seconds}")
    if http_date:
        return email.utils.formatdate(time.time() + float(seconds), usegmt=True)
    if float(seconds).is_integer():
        return str(int(seconds))
    return np.format_float_positional(float(seconds), trim="-")


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Serve the embedding protocols on 127.0.0.1 for manual tests and benchmarks."
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks a free one (default 0)")
    parser.add_argument(
        "--flavor", choices=FLAVORS, default="openai", help="protocol of POST .../embeddings (default openai)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added before every response (default 0)")
    parser.add_argument("--require-key", default=None, help="reject requests whose key differs from this value")
    parser.add_argument("--rate-429", type=float, default=0.0, help="fraction of requests answered 429 (default 0)")
    parser.add_argument(
        "--retry-after",
        type=float,
        default=1.0,
        help="Retry-After seconds sent with random 429s; a fraction such as 0.1 is sent as given (default 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random faults (default 0)")
    parser.add_argument(
        "--control-routes",
        action="store_true",
        help="serve GET /_stats (records as JSON) and POST /_reset (clear records, set the 429 rate)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted; print the base URL first so scripts can read the port."""
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = ProtocolServer(
        arguments.flavor,
        port=arguments.port,
        require_key=arguments.require_key if arguments.require_key is not None else False,
        latency=arguments.latency,
        seed=arguments.seed,
        control_routes=arguments.control_routes,
    )
    if arguments.rate_429 > 0:
        server.set_rate_429(arguments.rate_429, arguments.retry_after)

    server.start()
    print(f"listening on {server.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
