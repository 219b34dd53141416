"""Shared HTTP machinery of the remote providers: client, retries, rate limit, errors, checks.

Each remote provider owns one `Endpoint` for its base URL. The endpoint keeps
one pooled `httpx.AsyncClient` and spaces requests to a requests-per-minute
limit. It retries 429, 5xx and connection failures with exponential backoff
and full jitter, and honours `Retry-After`. Every failure becomes a typed
`RemoteError` whose detail names the provider, the model, the HTTP status and
the service's own message. API keys are passed in per request, never stored
here, and removed from every message this module builds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson

from wordorder_tui import core
from wordorder_tui.providers.base import EmbeddingError, released_slot

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 5.0
# Long enough for a local server that loads its model on the first request.
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_CONCURRENCY = 4

# First backoff ceiling in seconds when a policy sets none; tests lower it to keep retries fast.
BACKOFF_BASE_DELAY = 0.5

# A Retry-After longer than this is shortened to it, so a wrong header cannot stall a run for hours.
RETRY_AFTER_CAP = 60.0

# Failures that a later attempt can fix: the connection broke, timed out or was closed early.
RETRYABLE_ERRORS = (httpx.TransportError,)

# Characters of a non-JSON error body that go into a message.
BODY_EXCERPT = 200


class RemoteError(EmbeddingError):
    """A failed request to an embedding service, with the provider, model and HTTP status."""

    def __init__(self, title: str, detail: str, *, provider: str, model: str, status: int | None = None) -> None:
        super().__init__(title, detail)
        self.provider = provider
        self.model = model
        self.status = status


class AuthenticationFailed(RemoteError):
    """The key is missing, invalid or lacks permission (401, 403)."""


class RateLimited(RemoteError):
    """The service still returned 429 after every retry."""


class ServerFailed(RemoteError):
    """The service still returned 5xx after every retry."""


class RequestRejected(RemoteError):
    """The service rejected the request with a 4xx status other than 401, 403 and 429."""


class ConnectionFailed(RemoteError):
    """The connection failed, timed out or closed early on every attempt."""


class InvalidResponse(RemoteError):
    """The response is not valid JSON or its vectors fail a check."""


class InvalidModelConfig(EmbeddingError):
    """A model configuration that the service would reject, caught before any request."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before retrying; delays are in seconds.

    Attempt n (from 0) waits a uniform random time in [0, min(max_delay,
    base_delay * 2**n)] ("full jitter"), unless the response sent Retry-After.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    base_delay: float | None = None
    max_delay: float = 30.0
    retry_after_cap: float = RETRY_AFTER_CAP

    def backoff(self, attempt: int) -> float:
        base = BACKOFF_BASE_DELAY if self.base_delay is None else self.base_delay
        return random.uniform(0.0, min(self.max_delay, base * 2**attempt))


RETRY_AFTER_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the wait of a Retry-After header (seconds or an HTTP date) in seconds, or None.

    A date in the past gives 0. An unreadable value gives None, so the caller
    falls back to its own backoff.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()

    # Seconds are digits, with a fraction accepted because some servers send one; float()
    # alone would also take "nan", "inf", "1e2" and "1_0".
    if RETRY_AFTER_SECONDS.fullmatch(value):
        return float(value)

    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, moment.timestamp() - current)


@dataclass(frozen=True)
class Caller:
    """The sender of a request as messages name it: provider kind, model, key variable and key value."""

    provider: str
    model: str
    key_env: str | None = None
    key: str | None = None

    def redact(self, text: str) -> str:
        """Return text with the API key replaced, in case a service echoes it back."""
        if self.key and len(self.key) >= 4:
            text = text.replace(self.key, "***")
        return text

    def describe(self, status: int | None, message: str) -> str:
        """Return the one-line detail: provider, model, HTTP status and the service's message."""
        status_text = f"HTTP {status}" if status is not None else "no HTTP response"
        line = " ".join(self.redact(message).split())
        return f"{self.provider} model {self.model}: {status_text}: {line}"


def error_message(response: httpx.Response) -> str:
    """Extract the service's own error message from any of the known error shapes.

    OpenAI and Gemini send {"error": {"message": ...}}, Ollama and TEI
    {"error": "..."}, Jina and Voyage {"detail": "..."} or a pydantic list of
    {"loc", "msg"}, and Cohere {"message": "..."}. Anything else gives the
    start of the body.
    """
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None

    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error

        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list) and detail:
            return "; ".join(_pydantic_item(item) for item in detail)

        if isinstance(body.get("message"), str):
            return body["message"]

    text = response.text.strip()
    if not text:
        return response.reason_phrase or "empty response body"
    return text[:BODY_EXCERPT]


def _pydantic_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    location = ".".join(str(part) for part in item.get("loc", []))
    message = str(item.get("msg", item))
    return f"{location}: {message}" if location else message


class RateLimiter:
    """Spaces request starts at least 60 / requests_per_minute seconds apart."""

    def __init__(self, requests_per_minute: float) -> None:
        self.interval = 60.0 / requests_per_minute
        self._next = 0.0
        self._lock: asyncio.Lock | None = None

    async def wait(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


class Endpoint:
    """One base URL: a pooled client, retries, rate limit and error mapping.

    The client is created on first use in the running event loop and closed by
    `aclose`. `on_retry` is called once per retry so the provider can count them.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        retry: RetryPolicy | None = None,
        requests_per_minute: float | None = None,
        max_connections: int = DEFAULT_CONCURRENCY,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self.retry = retry or RetryPolicy()
        self.limiter = RateLimiter(requests_per_minute) if requests_per_minute else None
        self.max_connections = max(1, max_connections)
        self.on_retry = on_retry or (lambda: None)
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> httpx.AsyncClient:
        """Return the pooled client of the running event loop, creating it on first use."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A client belongs to the loop that opened its connections. A new loop (a second
            # `asyncio.run`) gets a new client, and the old one is left to the garbage collector.
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self.headers,
                timeout=self.timeout,
                limits=httpx.Limits(
                    max_connections=self.max_connections, max_keepalive_connections=self.max_connections
                ),
            )
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()
        self._loop = None

    async def request_json(
        self,
        method: str,
        path: str,
        caller: Caller,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send one request, retrying what can succeed later, and return the decoded JSON body.

        Raises a `RemoteError` subclass for every failure. Cancelling the
        awaiting task closes the request at once, because httpx runs on the
        event loop and gives up its connection when cancelled.
        """
        attempt = 0
        while True:
            # The client first: creating it takes tens of milliseconds, which must not fall
            # between the rate limiter's slot and the request it was given for.
            client = self.client()
            if self.limiter is not None:
                await self.limiter.wait()

            try:
                response = await client.request(method, path, json=body, headers=headers)
            except RETRYABLE_ERRORS as error:
                reason = _transport_reason(error)
                if attempt >= self.retry.max_retries:
                    raise ConnectionFailed(
                        "Connection failed",
                        caller.describe(
                            None,
                            f"{reason} at {self.base_url}{path} after {attempt + 1} attempts; "
                            "check that the server is running and that base_url is right",
                        ),
                        provider=caller.provider,
                        model=caller.model,
                    ) from error
                await self._wait_before_retry(caller, reason, attempt, None)
                attempt += 1
                continue

            status = response.status_code
            if status < 400:
                return self._decode(response, caller)

            retryable = status == 429 or status >= 500
            if not retryable or attempt >= self.retry.max_retries:
                raise _status_error(response, caller, attempts=attempt + 1)

            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            await self._wait_before_retry(caller, f"HTTP {status}", attempt, retry_after)
            attempt += 1

    async def _wait_before_retry(self, caller: Caller, reason: str, attempt: int, retry_after: float | None) -> None:
        if retry_after is None:
            delay = self.retry.backoff(attempt)
        else:
            delay = min(retry_after, self.retry.retry_after_cap)
        log.warning(
            "%s model %s: %s; retry %d of %d in %.2f s",
            caller.provider,
            caller.model,
            reason,
            attempt + 1,
            self.retry.max_retries,
            delay,
        )
        self.on_retry()
        async with released_slot():
            await asyncio.sleep(delay)

    def _decode(self, response: httpx.Response, caller: Caller) -> Any:
        # orjson parses a batch of vectors about ten times faster than json. It rejects the
        # NaN and Infinity literals that some servers send, so those bodies go to json, whose
        # result the vector checks then reject with a message that names the bad value.
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            pass
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            excerpt = response.text[:80]
            raise InvalidResponse(
                "Invalid response",
                caller.describe(response.status_code, f"the body is not valid JSON ({error}); it starts {excerpt!r}"),
                provider=caller.provider,
                model=caller.model,
                status=response.status_code,
            ) from error


def _transport_reason(error: httpx.TransportError) -> str:
    names = {
        httpx.ConnectError: "connection failed",
        httpx.ConnectTimeout: "connect timed out",
        httpx.ReadTimeout: "read timed out",
        httpx.WriteTimeout: "write timed out",
        httpx.PoolTimeout: "timed out waiting for a free connection",
        httpx.RemoteProtocolError: "the server closed the connection without a complete response",
        httpx.ReadError: "reading the response failed",
        httpx.WriteError: "sending the request failed",
    }
    reason = names.get(type(error), type(error).__name__)
    detail = str(error)
    return f"{reason} ({detail})" if detail and detail not in reason else reason


def _status_error(response: httpx.Response, caller: Caller, *, attempts: int) -> RemoteError:
    """Build the typed error for a final 4xx or 5xx response."""
    status = response.status_code
    message = error_message(response)
    arguments = {"provider": caller.provider, "model": caller.model, "status": status}

    # Gemini rejects a wrong key with 400 INVALID_ARGUMENT "API key not valid".
    key_problem = status in (401, 403) or (status == 400 and "api key" in message.lower())
    if key_problem:
        if caller.key_env:
            hint = f"; check the environment variable {caller.key_env}"
        else:
            hint = "; this model has no key configured: set api_key_env in the config file"
        return AuthenticationFailed("Authentication failed", caller.describe(status, message) + hint, **arguments)

    if status == 429:
        return RateLimited(
            "Rate limit exceeded",
            caller.describe(status, f"{message} (gave up after {attempts} attempts)"),
            **arguments,
        )
    if status >= 500:
        return ServerFailed(
            "Server error",
            caller.describe(status, f"{message} (gave up after {attempts} attempts)"),
            **arguments,
        )
    return RequestRejected("Request rejected", caller.describe(status, message), **arguments)


# Response checks


def invalid_response(caller: Caller, message: str) -> InvalidResponse:
    return InvalidResponse(
        "Invalid response", caller.describe(200, message), provider=caller.provider, model=caller.model, status=200
    )


def decode_base64_vector(value: Any, caller: Caller, position: int, dimensions: int | None) -> np.ndarray:
    """Decode base64 little-endian float32 bytes into a vector, checking the byte length."""
    if not isinstance(value, str):
        raise invalid_response(caller, f"embedding {position} should be a base64 string, got {type(value).__name__}")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise invalid_response(caller, f"embedding {position} is not valid base64: {error}") from error

    if len(raw) == 0 or len(raw) % 4 != 0:
        raise invalid_response(caller, f"embedding {position} has {len(raw)} bytes, not a multiple of 4 (float32)")
    if dimensions is not None and len(raw) != dimensions * 4:
        raise invalid_response(
            caller, f"embedding {position} has {len(raw)} bytes; {dimensions} dimensions need {dimensions * 4}"
        )
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def float_vector(value: Any, caller: Caller, position: int) -> np.ndarray:
    """Return a JSON list of numbers as a float32 vector, or raise InvalidResponse.

    NaN and infinity pass here (a number above the float32 range becomes
    infinity), because `check_vectors` rejects them with a clearer message.
    """
    if not isinstance(value, list) or not value:
        raise invalid_response(
            caller, f"embedding {position} should be a non-empty list of numbers, got {type(value).__name__}"
        )

    # `json.loads` gives JSON numbers as exactly int or float. Comparing exact types in one C-level pass
    # is about 2.5 times faster than an isinstance check per element. It rejects strings, None, nested
    # lists and objects, which np.asarray would convert or turn into another shape. It also rejects
    # booleans, although bool is a subclass of int, because `true` in a vector is not a number.
    if not {int, float}.issuperset(map(type, value)):
        raise invalid_response(caller, f"embedding {position} contains a value that is not a number")

    try:
        return np.asarray(value, dtype=np.float32)
    except OverflowError as error:
        raise invalid_response(caller, f"embedding {position} contains an integer too large for a float") from error


def sorted_by_index(items: Any, count: int, caller: Caller) -> list[dict[str, Any]]:
    """Return the `data` items of an OpenAI-style response in input order, checking each index once."""
    if not isinstance(items, list):
        raise invalid_response(caller, f"'data' should be a list, got {type(items).__name__}")
    if len(items) != count:
        raise invalid_response(caller, f"{len(items)} embeddings for {count} inputs")

    by_index: dict[int, dict[str, Any]] = {}
    for item in items:
        index = item.get("index") if isinstance(item, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
            raise invalid_response(caller, f"an item of 'data' has an invalid index {index!r} for {count} inputs")
        if index in by_index:
            raise invalid_response(caller, f"index {index} appears twice in 'data'")
        by_index[index] = item
    return [by_index[index] for index in range(count)]


def check_vectors(vectors: Sequence[np.ndarray], count: int, dimensions: int | None, caller: Caller) -> np.ndarray:
    """Return the vectors as an (n, d) float32 matrix after checking count, size and values.

    Every vector must have the requested dimensions (or the size of the first
    one), finite values and a non-zero norm.
    """
    if len(vectors) != count:
        raise invalid_response(caller, f"{len(vectors)} embeddings for {count} inputs")
    if not vectors:
        return np.zeros((0, 0), dtype=np.float32)

    if dimensions is not None:
        expected, source = dimensions, "requested"
    else:
        expected, source = vectors[0].shape[0], "first embedding's"
    for position, vector in enumerate(vectors):
        if vector.shape != (expected,):
            raise invalid_response(
                caller, f"embedding {position} has {vector.shape[0]} dimensions, the {source} size is {expected}"
            )

    matrix = np.stack(vectors).astype(np.float32, copy=False)
    try:
        core.check_vectors(matrix)
    except core.VectorError as error:
        raise invalid_response(caller, str(error)) from error
    return matrix
