"""The message catalogue: every user-facing text in English and Japanese.

Texts live in `messages.toml` beside this file, one table per message with
an `en` and a `ja` entry, so a translator edits one file. The language comes
from `set_language`, else `WORDORDER_LANG`, else the locale variables.
"""

from __future__ import annotations

import os
import tomllib
from functools import cache
from pathlib import Path

LANGUAGES = ("en", "ja")
_language: str | None = None


@cache
def _catalogue() -> dict[str, dict[str, str]]:
    with (Path(__file__).parent / "messages.toml").open("rb") as file:
        document = tomllib.load(file)

    flat: dict[str, dict[str, str]] = {}

    def walk(prefix: str, table: dict) -> None:
        for key, value in table.items():
            if isinstance(value, dict) and "en" not in value:
                walk(f"{prefix}{key}.", value)
            elif isinstance(value, dict):
                flat[f"{prefix}{key}"] = value

    walk("", document)
    return flat


def detect_language() -> str:
    """Return "ja" when WORDORDER_LANG or the locale selects Japanese, else "en"."""
    setting = os.environ.get("WORDORDER_LANG", "").strip().lower()
    if setting in LANGUAGES:
        return setting

    for variable in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(variable, "")
        if value:
            return "ja" if value.lower().startswith("ja") else "en"
    return "en"


def set_language(language: str | None) -> None:
    if language is not None and language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; expected one of {', '.join(LANGUAGES)}")
    global _language
    _language = language


def language() -> str:
    return _language or detect_language()


def t(key: str, **values: object) -> str:
    """Return the message `key` in the current language, formatted with `values`.

    A key missing from the catalogue is a programming error and raises KeyError.
    """
    entry = _catalogue()[key]
    text = entry.get(language()) or entry["en"]
    return text.format(**values) if values else text
