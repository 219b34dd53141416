"""The three panes of the main screen: pairs, models, and results with history.

Panes only display what the app gives them and report the user's choices;
they do no embedding, SQL or arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ContentSwitcher, DataTable, Select, SelectionList, Static
from textual.widgets.selection_list import Selection

from wordorder_tui.i18n import t
from wordorder_tui.pairs import PairSet
from wordorder_tui.report import truncate

PENDING = "…"


class PairsPane(Vertical):
    """The pair sets, and the pairs of the chosen set."""

    def __init__(self, set_names: Sequence[str], selected: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._set_names = list(set_names)
        self._selected = selected

    def compose(self) -> ComposeResult:
        # A blank choice would show no set; it is offered only when there is no set at all.
        options = [(name, index) for index, name in enumerate(self._set_names)]
        initial = self._selected if options else Select.NULL
        yield Select(options, prompt=t("pairs.choose_set"), allow_blank=not options, value=initial, compact=True,
                     id="set-select")
        table: DataTable = DataTable(cursor_type="row", zebra_stripes=True, id="pairs-table")
        table.add_column(t("column.pair"), key="id")
        table.add_column(t("column.category"), key="category")
        yield table
        yield Static("", id="pair-detail")

    def on_mount(self) -> None:
        self.border_title = t("pane.pairs")

    def set_choices(self, pair_sets: Sequence[PairSet], dirty: set[int], selected: int) -> None:
        select = self.query_one("#set-select", Select)
        labels = [(("* " if index in dirty else "") + pair_set.name, index) for index, pair_set in enumerate(pair_sets)]
        with self.prevent(Select.Changed):
            select.set_options(labels)
            if pair_sets:
                select.value = selected

    def show_set(self, pair_set: PairSet, cursor: int = 0) -> None:
        table = self.query_one("#pairs-table", DataTable)
        table.clear()
        for pair in pair_set.pairs:
            table.add_row(truncate(pair.id, 16), truncate(pair.category, 12), key=pair.id)
        if pair_set.pairs:
            table.move_cursor(row=min(cursor, len(pair_set.pairs) - 1))
        self.show_detail(pair_set, table.cursor_row)

    def show_detail(self, pair_set: PairSet, index: int) -> None:
        """Show both full texts of the highlighted pair under the table."""
        detail = self.query_one("#pair-detail", Static)
        if not 0 <= index < len(pair_set.pairs):
            detail.update("")
            return
        pair = pair_set.pairs[index]
        detail.update(f"a: {_one_line(pair.a)}\nb: {_one_line(pair.b)}")

    def cursor_index(self) -> int | None:
        table = self.query_one("#pairs-table", DataTable)
        return table.cursor_row if table.row_count else None


class ModelsPane(Vertical):
    """The registered models, each with a checkbox and its readiness."""

    reasons: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield SelectionList[str](id="models-list")

    def on_mount(self) -> None:
        self.border_title = t("pane.models")

    def set_models(self, models: Sequence[tuple[str, bool, str, bool]]) -> None:
        """Show (name, ready, reason, checked) rows; `reasons` keeps why each unready model is not ready."""
        selection_list = self.query_one("#models-list", SelectionList)
        selection_list.clear_options()
        self.reasons = {name: reason for name, ready, reason, _ in models if not ready}
        for name, ready, _, checked in models:
            label = name if ready else f"{name} ({t('models.not_ready')})"
            selection_list.add_option(Selection(label, name, checked and ready))

    def checked(self) -> list[str]:
        return list(self.query_one("#models-list", SelectionList).selected)


class ResultsPane(Vertical):
    """The scores of the latest or a chosen run, and the history of runs."""

    # A ContentSwitcher with a one-line header, not TabbedContent: the tabs widget alone added
    # about 30 ms to start-up (benchmarks/bench_startup.py), and `h` switches views anyway.
    VIEWS = ("results-table", "history-table")

    def compose(self) -> ComposeResult:
        yield Static("", id="results-views")
        with ContentSwitcher(initial="results-table", id="results-switcher"):
            yield DataTable(cursor_type="row", id="results-table")
            yield DataTable(cursor_type="row", zebra_stripes=True, id="history-table")

    @property
    def view(self) -> str:
        return self.query_one("#results-switcher", ContentSwitcher).current or "results-table"

    def show_view(self, view: str) -> None:
        """Show the scores ("results-table") or the history ("history-table") and mark it in the header."""
        self.query_one("#results-switcher", ContentSwitcher).current = view
        labels = {"results-table": t("tab.results"), "history-table": t("tab.history")}
        header = "  ".join(f"[reverse] {labels[name]} [/]" if name == view else f" {labels[name]} " for name in self.VIEWS)
        self.query_one("#results-views", Static).update(header + f"  [dim]{t('results.switch_hint')}[/]")

    def on_mount(self) -> None:
        self.border_title = t("pane.results")
        self.show_view("results-table")
        history = self.query_one("#history-table", DataTable)
        for key, label in (("id", "column.run"), ("status", "column.status"), ("model", "column.model"),
                           ("pair_set", "column.pair_set"), ("started", "column.started")):
            history.add_column(t(label), key=key)

    def show_grid(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Replace the grid: one column per header, one row per list, keyed by its first value (the pair id)."""
        table = self.query_one("#results-table", DataTable)
        table.clear(columns=True)
        for index, header in enumerate(headers):
            table.add_column(header, key=f"c{index}")
        for row in rows:
            table.add_row(*(_cell(value) for value in row), key=str(row[0]))

    def set_score(self, pair_id: str, column: int, value: float) -> None:
        self.set_text(pair_id, column, _cell(value))

    def set_text(self, pair_id: str, column: int, text: str) -> None:
        self.query_one("#results-table", DataTable).update_cell(pair_id, f"c{column}", text)

    def show_history(self, runs: Sequence[dict[str, Any]]) -> None:
        table = self.query_one("#history-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        for run in runs:
            started = (run.get("started_at") or "")[5:16].replace("T", " ")
            table.add_row(str(run["id"]), t(f"run_status.{run['status']}"), run["model"], run["pair_set"], started,
                          key=str(run["id"]))
        if runs:
            table.move_cursor(row=min(cursor, len(runs) - 1))


def _one_line(text: str) -> str:
    return text.replace("\n", " ⏎ ")


def _cell(value: Any) -> str:
    if value is None:
        return PENDING
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
