"""Shared fixtures: every test gets its own database, config file and pair folder."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from wordorder_tui import i18n

REPO = Path(__file__).resolve().parent.parent
PAIRS = REPO / "pairs"


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the database, config and language at per-test values, and keep the hub offline."""
    monkeypatch.setenv("WORDORDER_DB", str(tmp_path / "wordorder.db"))
    monkeypatch.setenv("WORDORDER_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("WORDORDER_LANG", "en")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    for variable in ("JINA_API_KEY", "OPENAI_API_KEY", "COHERE_API_KEY", "VOYAGE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture(autouse=True)
def reset_language() -> Iterator[None]:
    """Undo a `--lang` that a test passed to the CLI, which sets the language for the process."""
    yield
    i18n.set_language(None)


@pytest.fixture
def pairs_dir(tmp_path: Path) -> Path:
    """Return a private copy of the shipped pair sets, so tests may edit and save them."""
    target = tmp_path / "pairs"
    shutil.copytree(PAIRS, target)
    return target
