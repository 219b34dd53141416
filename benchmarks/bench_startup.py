"""Benchmark the time from process start to the first drawn frame of the wordorder TUI.

The baseline is `minimal_app.py` (one Static) on the same machine. Each
measurement is a fresh interpreter: the parent reads CLOCK_MONOTONIC (one
clock for every process on Linux) just before it spawns the child and passes
the value in WORDORDER_BENCH_SPAWNED_AT. The child imports what the
`wordorder` command imports, runs the app headless, and reads the clock again
in `on_ready`, which Textual sends after the first frame has been rendered by
the compositor. Headless mode skips only the write of that frame to a
terminal. The child also records whether torch or sentence_transformers were
imported by then.

Goals: median wordorder <= 1.5 x median minimal app, and no torch or
sentence_transformers in sys.modules at the first frame.

Usage: .venv/bin/python benchmarks/bench_startup.py [--repeats 7]
"""

from __future__ import annotations

import time

# Read before any other import, so the child's import time is part of what it reports.
SCRIPT_STARTED = time.clock_gettime(time.CLOCK_MONOTONIC)

import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
APPS = ("minimal", "wordorder")
# The goal forbids the first two. The rest are listed because they dominate import time.
HEAVY_MODULES = ("torch", "sentence_transformers", "transformers", "numpy", "sqlite_utils", "httpx", "tomlkit")
FORBIDDEN_MODULES = ("torch", "sentence_transformers")
GOAL_RATIO = 1.5
PARTS = ("spawn_to_script", "imports", "app_to_frame")

CHILD_VARIABLE = "WORDORDER_BENCH_CHILD"
SPAWNED_VARIABLE = "WORDORDER_BENCH_SPAWNED_AT"
RESULT_VARIABLE = "WORDORDER_BENCH_RESULT"


# Child side: one start-up, one JSON result file.


def _absolute_css_path(app_class: type) -> Any:
    """Return the app's CSS_PATH made absolute.

    Textual resolves a relative CSS_PATH against the file that defines the
    class, so a subclass defined here would look for the stylesheet in
    benchmarks/ instead of beside the app.
    """
    css_path = app_class.CSS_PATH
    if css_path is None:
        return None

    folder = Path(inspect.getfile(app_class)).parent
    if isinstance(css_path, (str, os.PathLike)):
        return str(folder / css_path)
    return [str(folder / path) for path in css_path]


def _load_app(kind: str) -> Any:
    """Import and construct the app, as `wordorder` with no arguments or `minimal_app.py` would."""
    if kind == "minimal":
        from minimal_app import MinimalApp

        return _timed_app(MinimalApp, time.clock_gettime(time.CLOCK_MONOTONIC))()

    # The `wordorder` console script imports the CLI first and the app module only for the TUI.
    from wordorder_tui import cli  # noqa: F401
    from wordorder_tui.paths import default_db_path, default_pairs_dir
    from wordorder_tui.tui.app import WordOrderApp

    imported = time.clock_gettime(time.CLOCK_MONOTONIC)
    return _timed_app(WordOrderApp, imported)(db_path=default_db_path(), pairs_dir=default_pairs_dir(), extra_files=[])


def _timed_app(base: type, imported: float) -> type:
    """Return a subclass of `base` that writes its start-up figures and exits at the first frame."""

    class FirstFrameApp(base):  # type: ignore[misc, valid-type]
        CSS_PATH = _absolute_css_path(base)

        def on_ready(self) -> None:
            first_frame = time.clock_gettime(time.CLOCK_MONOTONIC)
            spawned = float(os.environ[SPAWNED_VARIABLE])
            result = {
                "spawn_to_frame": first_frame - spawned,
                "spawn_to_script": SCRIPT_STARTED - spawned,
                "imports": imported - SCRIPT_STARTED,
                "app_to_frame": first_frame - imported,
                "heavy_modules": [name for name in HEAVY_MODULES if name in sys.modules],
            }
            Path(os.environ[RESULT_VARIABLE]).write_text(json.dumps(result), encoding="utf-8")
            self.exit(0)

    FirstFrameApp.__name__ = base.__name__
    return FirstFrameApp


def run_child(kind: str) -> None:
    app = _load_app(kind)
    app.run(headless=True, size=(160, 48))


# Parent side: spawn children, summarise.


def _child_environment(folder: Path) -> dict[str, str]:
    """Return the environment of every child: a private database and config, the repo's pair sets."""
    environment = dict(os.environ)
    environment.update(
        {
            "WORDORDER_DB": str(folder / "wordorder.db"),
            "WORDORDER_CONFIG": str(folder / "config.toml"),
            "WORDORDER_PAIRS": str(REPO / "pairs"),
            "WORDORDER_LANG": "en",
            "HF_HUB_OFFLINE": "1",
            "XDG_DATA_HOME": str(folder / "xdg-data"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH", "")])),
        }
    )
    return environment


def measure_once(kind: str, environment: dict[str, str], result_path: Path) -> dict[str, Any]:
    """Spawn one child and return its figures in seconds; raise RuntimeError if it failed."""
    import subprocess

    result_path.unlink(missing_ok=True)
    child_environment = dict(environment, **{CHILD_VARIABLE: kind, RESULT_VARIABLE: str(result_path)})
    child_environment[SPAWNED_VARIABLE] = repr(time.clock_gettime(time.CLOCK_MONOTONIC))
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve())],
        env=child_environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0 or not result_path.exists():
        raise RuntimeError(
            f"start-up child {kind!r} failed with exit status {completed.returncode}. "
            f"Its stderr (last 4,000 characters) shows the cause:\n{completed.stderr[-4000:]}"
        )
    return json.loads(result_path.read_text(encoding="utf-8"))


def summarise(values: list[float]) -> dict[str, float]:
    import statistics

    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_parent(repeats: int) -> int:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="wordorder-bench-startup-") as name:
        folder = Path(name)
        environment = _child_environment(folder)
        result_path = folder / "result.json"

        # One discarded run each fills the file cache, writes .pyc files and creates the database,
        # so the repeats measure the usual start of an installed app with an existing log.
        for kind in APPS:
            measure_once(kind, environment, result_path)

        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in APPS}
        for repeat in range(repeats):
            order = APPS if repeat % 2 == 0 else tuple(reversed(APPS))
            for kind in order:
                runs[kind].append(measure_once(kind, environment, result_path))

    print(f"Start-up to first drawn frame, {repeats} fresh processes per app, headless, 160x48 cells")
    print("Columns after max are medians of the parts: interpreter start, imports, app start to first frame.")
    print(f"{'app':<10} {'median ms':>10} {'min ms':>8} {'max ms':>8}   {'interpreter':>11} {'imports':>8} {'app':>6}")
    medians = {}
    for kind in APPS:
        total = summarise([run["spawn_to_frame"] for run in runs[kind]])
        parts = [summarise([run[part] for run in runs[kind]])["median"] for part in PARTS]
        medians[kind] = total["median"]
        print(
            f"{kind:<10} {total['median'] * 1000:>10.0f} {total['min'] * 1000:>8.0f} {total['max'] * 1000:>8.0f}"
            f"   {parts[0] * 1000:>11.0f} {parts[1] * 1000:>8.0f} {parts[2] * 1000:>6.0f}"
        )

    ratio = medians["wordorder"] / medians["minimal"]
    heavy = sorted({name for run in runs["wordorder"] for name in run["heavy_modules"]})
    forbidden = [name for name in heavy if name in FORBIDDEN_MODULES]
    ratio_met = ratio <= GOAL_RATIO

    print(f"goal: wordorder median <= {GOAL_RATIO}x minimal median: {'MET' if ratio_met else 'MISSED'} ({ratio:.2f}x)")
    print(
        "goal: torch and sentence_transformers not in sys.modules at the first frame: "
        f"{'MET' if not forbidden else 'MISSED'} (of {', '.join(HEAVY_MODULES)}: {', '.join(heavy) or 'none'} loaded)"
    )
    return 0 if ratio_met and not forbidden else 1


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Time the wordorder TUI's start-up to its first frame.")
    parser.add_argument("--repeats", type=int, default=7, help="measured start-ups per app (default: 7)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    return run_parent(args.repeats)


if __name__ == "__main__":
    child = os.environ.get(CHILD_VARIABLE)
    if child is not None:
        if child not in APPS:
            sys.exit(f"{CHILD_VARIABLE} must be one of {', '.join(APPS)}, got {child!r}")
        run_child(child)
    else:
        sys.exit(main())
