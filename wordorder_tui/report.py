"""Format runs as aligned text, Markdown, CSV or JSON for the CLI and exports.

A run here is the dict of `RunOutcome.as_json()`. Runs loaded from the store
are converted to the same shape by `stored_run`, so every command prints
through the same functions.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Sequence
from typing import Any

from wordorder_tui.i18n import t

FORMATS = ("table", "json", "csv", "markdown")


def progress_line(progress: Any, compact: bool = False) -> str:
    """Describe one model's `service.Progress` in a few words for a status line.

    `compact` gives the shorter form used when several models share one line.
    """
    if progress.phase == "loading":
        return t("progress.loading", model=progress.model)
    if progress.phase == "done":
        if compact:
            return f"{progress.model} ✓"
        return t("progress.done", model=progress.model, total=progress.total, cached=progress.cached)

    key = "progress.short" if compact else "progress.embedding"
    text = t(key, model=progress.model, done=progress.done, total=progress.total)
    details = []
    if progress.in_flight:
        details.append(t("progress.in_flight", count=progress.in_flight))
    if progress.retries:
        details.append(t("progress.retries", count=progress.retries))
    return f"{text} ({', '.join(details)})" if details else text


def display_width(text: str) -> int:
    """Return the terminal width of a string: East Asian wide characters take two columns."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def truncate(text: str, width: int) -> str:
    if display_width(text) <= width:
        return text

    out, used = [], 0
    for char in text:
        char_width = display_width(char)
        if used + char_width > width - 1:
            break
        out.append(char)
        used += char_width
    return "".join(out) + "…"


def _pad(text: str, width: int, right: bool = False) -> str:
    gap = " " * max(0, width - display_width(text))
    return gap + text if right else text + gap


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool] | None = None) -> str:
    """Return an aligned plain-text table; numeric columns are right-aligned."""
    numeric = numeric or [False] * len(headers)
    widths = [display_width(header) for header in headers]
    for row in rows:
        widths = [max(width, display_width(cell)) for width, cell in zip(widths, row)]

    lines = ["  ".join(_pad(header, width, right) for header, width, right in zip(headers, widths, numeric))]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append("  ".join(_pad(cell, width, right) for cell, width, right in zip(row, widths, numeric)))
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(header) for header in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines.extend("| " + " | ".join(cell(value) for value in row) + " |" for row in rows)
    return "\n".join(lines)


def score(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def comparison_grid(
    runs: Sequence[dict[str, Any]],
    references: dict[str, dict[str, dict[str, float]]] | None = None,
) -> list[tuple[str, list[str], list[list[Any]]]]:
    """Group runs by pair set into grids with one row per pair and one column per model.

    Returns (pair set, headers, rows); a row is [pair_id, category, a, b,
    cosine per model..., reference per reference model...] with None for gaps.
    """
    references = references or {}
    grids = []
    for pair_set in dict.fromkeys(run["pair_set"] for run in runs):
        set_runs = [run for run in runs if run["pair_set"] == pair_set]
        models = [run["model"] for run in set_runs]
        set_references = references.get(pair_set, {})
        reference_models = sorted({model for scores in set_references.values() for model in scores})

        order: dict[str, dict[str, Any]] = {}
        for run in set_runs:
            for result in run["results"]:
                order.setdefault(result["pair_id"], result)

        rows = []
        for pair_id, first in order.items():
            row: list[Any] = [pair_id, first["category"], first["a"], first["b"]]
            for run in set_runs:
                by_id = {result["pair_id"]: result["cosine"] for result in run["results"]}
                row.append(by_id.get(pair_id))
            row.extend(set_references.get(pair_id, {}).get(model) for model in reference_models)
            rows.append(row)

        headers = [t("column.pair"), t("column.category"), "a", "b", *models,
                   *(f"ref {model}" for model in reference_models)]
        grids.append((pair_set, headers, rows))
    return grids


def format_runs(
    runs: Sequence[dict[str, Any]],
    fmt: str,
    references: dict[str, dict[str, dict[str, float]]] | None = None,
) -> str:
    """Return the runs in one of FORMATS."""
    if fmt == "json":
        return json.dumps({"runs": list(runs)}, ensure_ascii=False, indent=2)

    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["run_id", "pair_set", "model", "status", "pair_id", "category", "a", "b", "cosine"])
        for run in runs:
            for result in run["results"]:
                writer.writerow(
                    [run["run_id"], run["pair_set"], run["model"], run["status"], result["pair_id"],
                     result["category"], result["a"], result["b"], repr(result["cosine"])]
                )
        return buffer.getvalue().rstrip("\n")

    sections = []
    for pair_set, headers, rows in comparison_grid(runs, references):
        if fmt == "markdown":
            cells = [[*(str(value) for value in row[:4]), *(score(value) for value in row[4:])] for row in rows]
            sections.append(f"### {pair_set}\n\n" + markdown_table(headers, cells))
        else:
            # The plain table leaves out the texts so that it fits a terminal; JSON and CSV carry them.
            cells = [[row[0], row[1], *(score(value) for value in row[4:])] for row in rows]
            kept = [headers[0], headers[1], *headers[4:]]
            numeric = [False, False, *([True] * (len(kept) - 2))]
            sections.append(f"{pair_set}\n" + text_table(kept, cells, numeric))

    failures = [run for run in runs if run["status"] != "completed"]
    for run in failures:
        detail = f": {run['error']}" if run.get("error") else ""
        sections.append(f"{run['model']} on {run['pair_set']}: {run['status']}{detail}")
    return "\n\n".join(sections)


def stored_run(run: dict[str, Any], results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Convert a run row and its result rows from the store to the JSON shape of a run."""
    return {
        "run_id": run["id"],
        "model": run["model"],
        "pair_set": run["pair_set"],
        "status": run["status"],
        "settings": run["settings"],
        "error": run.get("error"),
        "results": [
            {key: row[key] for key in ("pair_id", "category", "a", "b", "cosine")} for row in results
        ],
    }


def format_history(runs: Sequence[dict[str, Any]], fmt: str) -> str:
    keys = ["id", "started_at", "status", "pair_set", "model", "result_count"]
    if fmt == "json":
        # "run_id" matches `run` and `show`; "id" stays for scripts written against it.
        rows = [{"run_id": run.get("id"), **{key: run.get(key) for key in [*keys, "settings", "error"]}}
                for run in runs]
        return json.dumps({"runs": rows}, ensure_ascii=False, indent=2)

    rows = [[str(run.get(key) if run.get(key) is not None else "") for key in keys] for run in runs]
    rows = [[row[0], row[1][:19].replace("T", " "), *row[2:]] for row in rows]
    if fmt == "csv":
        # CSV headers are data keys for scripts, so they stay the same in every language.
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([["run_id", *keys[1:]], *rows])
        return buffer.getvalue().rstrip("\n")

    headers = [t(f"column.{key}") for key in ("run", "started", "status", "pair_set", "model", "results")]
    if fmt == "markdown":
        return markdown_table(headers, rows)
    return text_table(headers, rows, [True, False, False, False, False, True])
