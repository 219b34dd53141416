"""Benchmark remote embedding through `EmbeddingService` against the local protocol test server.

The server is `tests/protocol_server.py` with the OpenAI protocol, started as a
separate process on 127.0.0.1 (so it does not share the client's GIL), with
50 ms added before every response. The client is
`EmbeddingService(Store(new file)).embed(provider, texts)` with the `openai`
provider from the registry: 10,000 distinct texts, batch size 64, concurrency
8, 64 dimensions.

The ideal wall time is ceil(10000 / 64) / 8 x 50 ms = 0.98 s: every request
costs only the added latency and 8 are always in flight. Goals:

1. clean run: median wall time <= 1.2 x ideal;
2. 10 % of requests get a 429 response with `Retry-After: 0.1`: median wall time
   <= 1.5 x ideal, every vector equal to `embedding_for(text, 64)`, and every
   text in exactly one response with status 200;
3. a second run of the same texts with the same service: no request, and
   median first run >= 100 x median second run.

One clean run before the measured ones is not measured. It fills the server's
caches of vectors and their JSON text, so that the server's cost is the same in
every measured run and close to the added latency alone.

The benchmark reads the server's records over HTTP (`GET /_stats`) after each
run and resets them before it (`POST /_reset`, which also sets the 429 rate).
Those calls are not timed. Two runs have no goal: a second run with a new
`EmbeddingService` on the same store, which reads every vector from SQLite,
and one 429 run with whole-second `Retry-After: 1`.

When a goal is missed (or with --diagnose), the benchmark sends the same
requests from a bare httpx client that does not parse the responses, which
times the server alone. It then times the CPU of each client stage on the
same bodies without HTTP.

--dimensions and --encoding base64 change what the server computes and
sends; the goals are set for the defaults.

Usage: .venv/bin/python benchmarks/bench_remote.py [--repeats 5] [--texts 10000] [--dimensions 64]
       [--encoding float|base64] [--diagnose]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import logging
import math
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from protocol_server import embedding_for

from wordorder_tui.config import ModelConfig
from wordorder_tui.providers.base import Provider
from wordorder_tui.providers.http import check_vectors
from wordorder_tui.providers.registry import FACTORIES
from wordorder_tui.service import EmbeddingService, check_batch
from wordorder_tui.store import Store, text_hash

LATENCY = 0.05
BATCH_SIZE = 64
CONCURRENCY = 8
RATE_429 = 0.1
RETRY_AFTER = 0.1
GOAL_CLEAN = 1.2
GOAL_429 = 1.5
GOAL_CACHE_SPEED_UP = 100.0
SEED = 20240611
MODEL = "text-embedding-3-small"

VOCABULARY = (
    "the", "a", "my", "their", "one", "cat", "dog", "horse", "bird", "child", "teacher", "doctor", "farmer",
    "sailor", "river", "city", "house", "garden", "window", "letter", "song", "bridge", "red", "small", "old",
    "quiet", "bright", "heavy", "green", "saw", "chased", "found", "gave", "took", "painted", "followed",
    "helped", "carried", "before", "after", "near", "under", "over", "without", "because", "while", "slowly",
    "often", "never", "again",
)


# The server, in its own process.


@dataclass(frozen=True)
class Response:
    """One reply of the server: its HTTP status and the input texts of its request."""

    status: int
    texts: tuple[str, ...]


@dataclass(frozen=True)
class ServerStats:
    """The server's records since the last reset, and its process CPU seconds so far."""

    requests: int
    responses: list[Response]
    cpu_seconds: float


class ServerProcess:
    """`tests/protocol_server.py` in a child process, controlled over its `/_stats` and `/_reset` routes."""

    def __init__(self, latency: float, seed: int) -> None:
        command = [
            sys.executable, str(REPO / "tests" / "protocol_server.py"), "--port", "0", "--flavor", "openai",
            "--latency", str(latency), "--seed", str(seed), "--control-routes",
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the protocol server did not start: its first output line was {line!r}")
        self.base_url = line.strip().removeprefix("listening on ")
        self.control = httpx.Client(base_url=self.base_url, timeout=30)

    def reset(self, rate_429: float = 0.0, retry_after: float = RETRY_AFTER) -> None:
        """Clear the server's records and set its rate of 429 responses."""
        response = self.control.post("/_reset", json={"rate_429": rate_429, "retry_after": retry_after})
        response.raise_for_status()

    def stats(self) -> ServerStats:
        body = self.control.get("/_stats").raise_for_status().json()
        responses = [Response(entry["status"], tuple(entry["texts"])) for entry in body["responses"]]
        return ServerStats(body["requests"], responses, body["cpu_seconds"])

    def stop(self) -> None:
        """Stop the server with SIGINT, which its command line handles, and wait for it."""
        if hasattr(self, "control"):
            self.control.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# Inputs and the provider.


def generate_texts(count: int, seed: int = SEED) -> list[str]:
    """Return `count` distinct sentences of 4 to 18 words from VOCABULARY, as pair sets mix short and long texts."""
    rng = random.Random(seed)
    texts: dict[str, None] = {}
    while len(texts) < count:
        words = rng.choices(VOCABULARY, k=rng.randint(4, 18))
        texts[" ".join(words).capitalize() + "."] = None
    return list(texts)


def request_options(dimensions: int, encoding: str) -> dict[str, Any]:
    """Return the provider options, which are also the extra fields of every request body."""
    options: dict[str, Any] = {"dimensions": dimensions}
    if encoding != "float":
        options["encoding_format"] = encoding
    return options


def build_provider(base_url: str, dimensions: int, encoding: str) -> Provider:
    """Build the `openai` provider from a ModelConfig, as the registry does for a config file entry."""
    config = ModelConfig(
        name="bench-remote",
        provider="openai",
        model=MODEL,
        base_url=f"{base_url}/v1",
        options=request_options(dimensions, encoding),
        batch_size=BATCH_SIZE,
        concurrency=CONCURRENCY,
        source="bench_remote.py",
    )
    return FACTORIES["openai"](config)


def ideal_seconds(count: int) -> float:
    return math.ceil(count / BATCH_SIZE) / CONCURRENCY * LATENCY


# One measured run.


@dataclass
class RunResult:
    """Figures of one run: a first embed on a new store and, for the clean scenario, the second runs."""

    seconds: float
    cpu_seconds: float
    server_cpu_seconds: float
    vectors: np.ndarray
    retries: int
    responses: list[Response]
    second_seconds: float | None = None
    second_requests: int | None = None
    store_seconds: float | None = None
    store_requests: int | None = None
    problems: list[str] = field(default_factory=list)


async def timed_embed(service: EmbeddingService, provider: Provider, texts: Sequence[str]) -> tuple[np.ndarray, float, float]:
    """Embed once and return the vectors, wall seconds and this process's CPU seconds (the client's only)."""
    cpu_started = time.process_time()
    started = time.perf_counter()
    vectors = await service.embed(provider, texts)
    return vectors, time.perf_counter() - started, time.process_time() - cpu_started


async def timed_again(server: ServerProcess, service: EmbeddingService, provider: Provider, texts: Sequence[str],
                      first: np.ndarray, label: str, problems: list[str]) -> tuple[float, int]:
    """Embed the texts once more and return the wall seconds and the number of requests the server received."""
    requests_before = server.stats().requests
    again, seconds, _ = await timed_embed(service, provider, texts)
    if not np.array_equal(again, first):
        problems.append(f"the {label} returned other vectors than the first run")
    return seconds, server.stats().requests - requests_before


def run_once(server: ServerProcess, texts: Sequence[str], dimensions: int, encoding: str, *, rate_429: float,
             retry_after: float = RETRY_AFTER, second_run: bool) -> RunResult:
    """Embed the texts with a new provider into a new store, and with `second_run` twice more from the caches.

    The second run uses the same service, as the TUI keeps one for its
    lifetime. The run after it uses a new service on the same store, so every
    vector comes from SQLite, as in a second CLI command.
    """
    server.reset(rate_429, retry_after)
    cpu_before = server.stats().cpu_seconds

    with tempfile.TemporaryDirectory(prefix="bench-remote-") as folder:
        store = Store(Path(folder) / "cache.sqlite")
        provider = build_provider(server.base_url, dimensions, encoding)

        async def scenario() -> RunResult:
            try:
                service = EmbeddingService(store)
                vectors, seconds, cpu_seconds = await timed_embed(service, provider, texts)
                stats = server.stats()
                result = RunResult(seconds, cpu_seconds, stats.cpu_seconds - cpu_before, vectors, provider.retries,
                                   stats.responses)
                if second_run:
                    result.second_seconds, result.second_requests = await timed_again(
                        server, service, provider, texts, vectors, "second run", result.problems)
                    result.store_seconds, result.store_requests = await timed_again(
                        server, EmbeddingService(store), provider, texts, vectors, "run with a new service",
                        result.problems)
                return result
            finally:
                await provider.aclose()

        try:
            return asyncio.run(scenario())
        finally:
            store.close()


def check_run(result: RunResult, texts: Sequence[str], expected: np.ndarray) -> list[str]:
    """Return a message for every lost, duplicated or wrong vector and every unexpected response."""
    problems = list(result.problems)

    if result.vectors.shape != expected.shape:
        problems.append(f"vectors have shape {result.vectors.shape}, expected {expected.shape}")
    else:
        wrong = int(np.count_nonzero(~(result.vectors == expected).all(axis=1)))
        if wrong:
            problems.append(f"{wrong} vectors differ from embedding_for(text)")

    statuses = collections.Counter(response.status for response in result.responses)
    batches = math.ceil(len(texts) / BATCH_SIZE)
    if statuses[200] != batches:
        problems.append(f"{statuses[200]} responses with status 200, expected one per batch ({batches})")
    if statuses[429] != result.retries:
        problems.append(f"{statuses[429]} responses with status 429 but the provider counted {result.retries} retries")
    others = {status: count for status, count in statuses.items() if status not in (200, 429)}
    if others:
        problems.append(f"unexpected statuses (status: count): {others}")

    served = collections.Counter(text for response in result.responses if response.status == 200 for text in response.texts)
    missing = [text for text in texts if served[text] == 0]
    duplicated = [text for text, count in served.items() if count > 1]
    unknown = set(served) - set(texts)
    if missing:
        problems.append(f"{len(missing)} texts never got a 200 response, such as {missing[0]!r}")
    if duplicated:
        problems.append(f"{len(duplicated)} texts got more than one 200 response, such as {duplicated[0]!r}")
    if unknown:
        problems.append(f"{len(unknown)} texts were sent that were not requested")
    for label, requests in (("second run", result.second_requests), ("run with a new service", result.store_requests)):
        if requests:
            problems.append(f"the {label} sent {requests} requests, expected none")
    return problems


# Diagnosis: server and client apart.


async def send_without_parsing(base_url: str, texts: Sequence[str], dimensions: int,
                               encoding: str) -> tuple[float, list[bytes]]:
    """Send the service's requests from a bare httpx client that only reads the bytes, and return wall seconds and bodies."""
    batches = [list(texts[start : start + BATCH_SIZE]) for start in range(0, len(texts), BATCH_SIZE)]
    bodies: list[bytes] = [b""] * len(batches)
    limit = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async with httpx.AsyncClient(base_url=f"{base_url}/v1", limits=limits, timeout=60) as client:

        async def send(position: int) -> None:
            async with limit:
                response = await client.post(
                    "/embeddings",
                    json={"model": MODEL, "input": batches[position], **request_options(dimensions, encoding)},
                )
                response.raise_for_status()
                bodies[position] = response.content

        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for position in range(len(batches)):
                group.create_task(send(position))
        return time.perf_counter() - started, bodies


@dataclass
class StageTime:
    """Wall and CPU seconds of one stage, summed over all batches. CPU time is this thread's only."""

    wall: float = 0.0
    cpu: float = 0.0


@contextlib.contextmanager
def timed(totals: dict[str, StageTime], stage: str) -> Iterator[None]:
    """Add the wall and thread CPU seconds of the block to `totals[stage]`."""
    wall_started = time.perf_counter()
    cpu_started = time.thread_time()
    yield
    total = totals.setdefault(stage, StageTime())
    total.wall += time.perf_counter() - wall_started
    total.cpu += time.thread_time() - cpu_started


def stage_times(texts: Sequence[str], bodies: Sequence[bytes], dimensions: int, encoding: str,
                folder: Path) -> dict[str, StageTime]:
    """Time each client stage of one run on the recorded response bodies, in one thread without HTTP or the event loop."""
    provider = build_provider("http://127.0.0.1:9", dimensions, encoding)
    caller = provider.caller()
    fingerprint = provider.fingerprint()
    store = Store(folder / "stages.sqlite")
    totals: dict[str, StageTime] = {}

    try:
        for position, raw in enumerate(bodies):
            batch = texts[position * BATCH_SIZE : (position + 1) * BATCH_SIZE]
            # The client parses with orjson (providers/http.py), so that is what is timed.
            with timed(totals, "client: orjson.loads"):
                body = orjson.loads(raw)
            with timed(totals, "client: read_vectors"):
                vectors = provider.read_vectors(body, len(batch), caller)
            with timed(totals, "client: http.check_vectors"):
                matrix = check_vectors(vectors, len(batch), dimensions, caller)
            with timed(totals, "client: service.check_batch"):
                matrix = check_batch(provider, batch, matrix)
            with timed(totals, "client: Store.put_embeddings"):
                store.put_embeddings(fingerprint, batch, matrix)

        with timed(totals, "cache read: text_hash"):
            for text in texts:
                text_hash(text)
        with timed(totals, "cache read: Store.get_embeddings"):
            cached = store.get_embeddings(fingerprint, texts)
        with timed(totals, "cache read: np.stack"):
            np.stack([cached[text] for text in texts])
    finally:
        store.close()
    return totals


def diagnose(server: ServerProcess, texts: Sequence[str], dimensions: int, encoding: str,
             first_run_median: float) -> None:
    """Print the wall time of the server with a bare client, then the time of each client stage."""
    server.reset()
    ideal = ideal_seconds(len(texts))
    cpu_before = server.stats().cpu_seconds
    wall, bodies = asyncio.run(send_without_parsing(server.base_url, texts, dimensions, encoding))
    server_cpu = server.stats().cpu_seconds - cpu_before
    megabytes = sum(len(body) for body in bodies) / 1e6
    print(f"\nserver alone (bare httpx client, no parsing, {megabytes:.1f} MB of responses): {wall:.2f} s, "
          f"{wall / ideal:.2f} x ideal, {wall / first_run_median:.0%} of the median clean run; "
          f"server CPU {server_cpu:.2f} s")

    with tempfile.TemporaryDirectory(prefix="bench-remote-") as folder:
        totals = stage_times(texts, bodies, dimensions, encoding, Path(folder))
    print("seconds per stage for all texts, one thread, no HTTP:")
    print(f"  {'stage':36s} {'wall':>7s} {'CPU':>7s}")
    for stage, total in totals.items():
        print(f"  {stage:36s} {total.wall:7.3f} {total.cpu:7.3f}")

    client_cpu = sum(total.cpu for stage, total in totals.items() if stage.startswith("client"))
    print(f"  CPU of the client stages: {client_cpu:.2f} s; ideal wall time: {ideal:.2f} s")


# Report.


def summarise(values: Sequence[float]) -> str:
    return f"median {statistics.median(values):.3f}  min {min(values):.3f}  max {max(values):.3f}"


def describe_machine() -> list[str]:
    cpu_model = "unknown"
    memory = "unknown"
    try:
        cpu_model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("model name"))
        memory = next(line.split(":", 1)[1].strip() for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        pass
    return [
        f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"cpus: {os.cpu_count()} (usable by this process: {len(os.sched_getaffinity(0))}), cpu model: {cpu_model}",
        f"memory: {memory}",
        f"python: {platform.python_version()}, httpx: {httpx.__version__}, numpy: {np.__version__}",
        f"load average 1/5/15 min: {' '.join(f'{value:.2f}' for value in os.getloadavg())}",
    ]


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="measured runs per scenario (default 5)")
    parser.add_argument("--texts", type=int, default=10_000, help="distinct texts per run (default 10000)")
    parser.add_argument("--dimensions", type=int, default=64, help="vector size requested from the server (default 64)")
    parser.add_argument("--encoding", choices=("float", "base64"), default="float",
                        help="encoding_format of the vectors: JSON numbers or base64 float32 (default float)")
    parser.add_argument("--diagnose", action="store_true",
                        help="separate server and client costs even when every goal is met")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    # Every retry logs a warning, and printing them would hide the figures.
    logging.getLogger("wordorder_tui.providers.http").setLevel(logging.ERROR)

    for line in describe_machine():
        print(line)
    texts = generate_texts(arguments.texts)
    dimensions = arguments.dimensions
    encoding = arguments.encoding
    ideal = ideal_seconds(len(texts))
    print(f"{len(texts)} texts, batch {BATCH_SIZE}, concurrency {CONCURRENCY}, {dimensions} dimensions ({encoding}), "
          f"{LATENCY * 1000:.0f} ms latency; ideal {ideal:.3f} s; {arguments.repeats} runs per scenario")

    expected = np.asarray([embedding_for(text, dimensions) for text in texts], dtype=np.float32)
    clean: list[RunResult] = []
    limited: list[RunResult] = []
    problems: list[str] = []

    with ServerProcess(LATENCY, SEED) as server:
        warm_up = run_once(server, texts, dimensions, encoding, rate_429=0.0, second_run=False)
        for _ in range(arguments.repeats):
            clean.append(run_once(server, texts, dimensions, encoding, rate_429=0.0, second_run=True))
            limited.append(run_once(server, texts, dimensions, encoding, rate_429=RATE_429, second_run=False))
        whole_seconds = run_once(server, texts, dimensions, encoding, rate_429=RATE_429, retry_after=1.0,
                                 second_run=False)

        scenarios = (("warm-up", [warm_up]), ("clean", clean), ("429", limited),
                     ("429 whole-second Retry-After", [whole_seconds]))
        for name, results in scenarios:
            for number, result in enumerate(results, 1):
                problems.extend(f"{name} run {number}: {problem}" for problem in check_run(result, texts, expected))

        first = [result.seconds for result in clean]
        rate_limited = [result.seconds for result in limited]
        second = [result.second_seconds or 0.0 for result in clean]
        from_store = [result.store_seconds or 0.0 for result in clean]
        speed_ups = [result.seconds / (result.second_seconds or math.inf) for result in clean]
        second_requests = sum(result.second_requests or 0 for result in clean)

        clean_ratio = statistics.median(first) / ideal
        limited_ratio = statistics.median(rate_limited) / ideal
        speed_up = statistics.median(first) / statistics.median(second)
        goals = {
            f"clean run <= {GOAL_CLEAN} x ideal": clean_ratio <= GOAL_CLEAN,
            f"429 run <= {GOAL_429} x ideal": limited_ratio <= GOAL_429,
            "no text lost, duplicated or wrong": not problems,
            "second run sends no request": second_requests == 0,
            f"second run >= {GOAL_CACHE_SPEED_UP:.0f} x faster": speed_up >= GOAL_CACHE_SPEED_UP,
        }

        print(f"\nwarm-up run (not measured): {warm_up.seconds:.3f} s, server CPU {warm_up.server_cpu_seconds:.2f} s")
        print(f"clean run, s:      {summarise(first)}  -> {clean_ratio:.2f} x ideal")
        print(f"  client CPU, s:   {summarise([result.cpu_seconds for result in clean])}")
        print(f"  server CPU, s:   {summarise([result.server_cpu_seconds for result in clean])}")
        print(f"429 run, s:        {summarise(rate_limited)}  -> {limited_ratio:.2f} x ideal")
        print(f"  429 responses:   {summarise([float(result.retries) for result in limited])}")
        print(f"429 with whole-second Retry-After: 1 ({whole_seconds.retries} retries, 1 run, no goal): "
              f"{whole_seconds.seconds:.3f} s -> {whole_seconds.seconds / ideal:.2f} x ideal")
        print(f"second run, same service, s: {summarise(second)}; requests: {second_requests}")
        print(f"  speed-up:        {summarise(speed_ups)}; median first / median second: {speed_up:.1f} x")
        print(f"second run, new service (SQLite read, no goal), s: {summarise(from_store)}; "
              f"median first / median of these: {statistics.median(first) / statistics.median(from_store):.1f} x")
        for problem in problems:
            print(f"PROBLEM: {problem}")

        if arguments.diagnose or not all(goals.values()):
            diagnose(server, texts, dimensions, encoding, statistics.median(first))

    print(f"\nload average after: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    for goal, met in goals.items():
        print(f"{'met   ' if met else 'MISSED'} {goal}")
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
