"""The baseline of the start-up benchmark: a Textual app with one Static widget.

Run it on its own with `.venv/bin/python benchmarks/minimal_app.py` (q quits).
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Static


class MinimalApp(App[int]):
    """A Textual app with the smallest useful screen: one line of text."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("q", "quit", "Quit")]

    def compose(self) -> ComposeResult:
        yield Static("minimal Textual app")


if __name__ == "__main__":
    MinimalApp().run()
