"""The wordorder Textual app: edit pairs, choose models, run, read results and history.

Slow work runs in workers: runs are async workers on the event loop (model
code itself runs in a child process or a thread inside the service), store
reads go through `asyncio.to_thread`. Every worker failure reaches
`on_worker_state_changed` and becomes a titled notification.

The store, the service and the model registry pull in sqlite-utils, numpy and
httpx, which together take longer to import than Textual itself. They are
imported after the first frame is drawn, so the app appears at once. The
dialog screens are imported when first opened, for the same reason.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Select, SelectionList, Static
from textual.worker import Worker, WorkerState

from wordorder_tui.config import ConfigError, load_config
from wordorder_tui.i18n import t
from wordorder_tui.pairs import Pair, PairFileError, PairSet, load_pair_set, load_pair_sets, new_pair_id
from wordorder_tui.pairs import save_pair_set, validate_pair_set
from wordorder_tui.paths import APP_NAME, default_config_path
from wordorder_tui.report import comparison_grid, format_runs, progress_line, stored_run
from wordorder_tui.tui.panes import ModelsPane, PairsPane, ResultsPane

if TYPE_CHECKING:
    from wordorder_tui.providers.registry import Registry
    from wordorder_tui.runner import RunOutcome
    from wordorder_tui.service import EmbeddingService, Progress
    from wordorder_tui.store import Store

log = logging.getLogger(__name__)


def progress_bar(done: int, total: int, width: int = 20) -> str:
    """Draw a text progress bar with a percentage, such as "██████░░░░ 60%"."""
    if total <= 0:
        return ""
    filled = round(width * min(done, total) / total)
    return "█" * filled + "░" * (width - filled) + f" {100 * done // total:3d}%"


def _reference_headers(references: list[str]) -> list[str]:
    # One reference model gets the short header "ref" and is named in the subtitle, to save width.
    if len(references) == 1:
        return ["ref"]
    return [f"ref {name}" for name in references]


def _grid_subtitle(pair_set: str, references: list[str]) -> str:
    if len(references) == 1:
        return f"{pair_set} · ref = {references[0]}"
    return pair_set


DEFAULT_SET = "word-order-en"
MISSING_FAILED = "✗"  # shown in place of a score that a failed run did not produce


class WordOrderApp(App[int]):
    """Three panes at once: pairs on the left above models, results and history on the right."""

    CSS_PATH = "app.tcss"
    TITLE = "wordorder"

    BINDINGS = [
        Binding("r", "run", t("key.run"), id="run"),
        Binding("c", "cancel", t("key.cancel_run"), id="run.cancel"),
        Binding("e", "edit_pair", t("key.edit"), id="pair.edit"),
        Binding("a", "add_pair", t("key.add"), id="pair.add"),
        Binding("d", "delete_pair", t("key.delete"), id="pair.delete"),
        Binding("s", "save_set", t("key.save"), id="set.save"),
        Binding("h", "toggle_history", t("key.history"), id="history.toggle"),
        Binding("x", "export", t("key.export"), id="results.export"),
        Binding("q", "quit_app", t("key.quit"), id="quit"),
    ]

    def __init__(self, db_path: Path, pairs_dir: Path, extra_files: list[Path] | None = None) -> None:
        super().__init__()
        self.db_path = Path(db_path)
        self.pairs_dir = Path(pairs_dir)
        self.extra_files = extra_files or []

        self.store: Store | None = None
        self.service: EmbeddingService | None = None  # one for the app's life, so its memory cache persists
        self.registry: Registry | None = None
        self.pair_sets: list[PairSet] = []
        self.current = 0
        self.dirty: set[int] = set()
        self._pair_errors = self._load_pair_sets()

        self._progress: dict[str, Progress] = {}
        self._grid_runs: list[str] = []  # model names of the score columns now shown
        self._grid_token = 0  # changes whenever the results grid is replaced
        self._grid_text = ""  # the grid as Markdown, for export

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield PairsPane([pair_set.name for pair_set in self.pair_sets], self.current, id="pairs-pane")
                yield ModelsPane(id="models-pane")
            yield ResultsPane(id="results-pane")
        with Horizontal(id="status-bar"):
            yield Static(t("status.ready"), id="status")
            yield Static("", id="progress")
        # Compact, and without the palette key, so that every binding fits in 80 columns.
        yield Footer(compact=True, show_command_palette=False)

    MAIN_ACTIONS = {"run", "cancel", "edit_pair", "add_pair", "delete_pair", "save_set", "toggle_history", "export",
                    "quit_app"}

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While a dialog is open, the main keys neither act behind it nor show in the footer.
        if action in self.MAIN_ACTIONS and isinstance(self.screen, ModalScreen):
            return False
        return True

    # Start-up

    def on_mount(self) -> None:
        for error in self._pair_errors:
            self.notify(str(error), title=t("error.pair_file"), severity="error", timeout=15)
        if not self.pair_sets:
            self.notify(t("error.no_pair_sets_detail", path=self.pairs_dir), title=t("error.no_pair_sets"),
                        severity="warning", timeout=15)
        self._show_current()

    def on_ready(self) -> None:
        # Textual sends Ready once the first frame is on screen.
        self._start_services()

    def _start_services(self) -> None:
        """Load the model list and open the store, after the first frame is on screen."""
        from wordorder_tui.service import EmbeddingService
        from wordorder_tui.store import Store

        self._load_models()
        try:
            self.store = Store(self.db_path)
            self.service = EmbeddingService(self.store)
            interrupted = self.store.recover_interrupted()
        except Exception as error:  # sqlite3.Error, OSError: the app still edits pairs without a log.
            log.exception("opening the database %s failed", self.db_path)
            self.notify(t("error.db_detail", path=self.db_path, error=error), title=t("error.db"), severity="error",
                        timeout=15)
            return
        if interrupted:
            self.notify(t("notice.interrupted", count=interrupted), title=t("notice.interrupted_title"))
        self.refresh_history()

    def _load_models(self) -> None:
        from wordorder_tui.providers.registry import Registry

        try:
            self.registry = Registry(load_config(default_config_path()))
        except ConfigError as error:
            log.warning("invalid config file: %s", error)
            self.notify(str(error), title=t("error.config"), severity="error", timeout=15)
            self.registry = Registry()

        defaults = set(self.registry.defaults())
        rows = []
        for entry in self.registry.entries():
            readiness = entry.readiness()
            rows.append((entry.name, readiness.ready, readiness.reason, entry.name in defaults))
        self.query_one(ModelsPane).set_models(rows)

    def _load_pair_sets(self) -> list[PairFileError]:
        """Read the pair sets before the screen is built; return the files that failed to load."""
        pair_sets, errors = load_pair_sets(self.pairs_dir) if self.pairs_dir.is_dir() else ([], [])
        for path in self.extra_files:
            try:
                pair_sets.append(load_pair_set(path))
            except PairFileError as error:
                errors.append(error)

        self.pair_sets = pair_sets
        self.current = self._initial_set_index(len(pair_sets) - len(self.extra_files))
        return errors

    def _initial_set_index(self, first_extra: int) -> int:
        """Open the first file given on the command line, else the English built-in set, else the first."""
        if self.extra_files and 0 <= first_extra < len(self.pair_sets):
            return first_extra
        names = [pair_set.name for pair_set in self.pair_sets]
        return names.index(DEFAULT_SET) if DEFAULT_SET in names else 0

    # Pairs

    @property
    def pair_set(self) -> PairSet | None:
        return self.pair_sets[self.current] if self.pair_sets else None

    def _show_current(self, cursor: int = 0) -> None:
        pane = self.query_one(PairsPane)
        pane.set_choices(self.pair_sets, self.dirty, self.current)
        if self.pair_set is not None:
            pane.show_set(self.pair_set, cursor)
            pane.border_subtitle = self.pair_set.language + (" *" if self.current in self.dirty else "")

    @on(DataTable.RowHighlighted, "#pairs-table")
    def _pair_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.pair_set is not None:
            self.query_one(PairsPane).show_detail(self.pair_set, event.cursor_row)

    @on(SelectionList.SelectionHighlighted, "#models-list")
    def _model_highlighted(self, event: SelectionList.SelectionHighlighted) -> None:
        # Say why a model is not ready, and what to set, while it is highlighted.
        name = event.selection.value
        reason = self.query_one(ModelsPane).reasons.get(name)
        if reason:
            self._set_status(f"{name}: {reason}")
        elif not self._progress:
            # Leaving an unready model: its reason no longer applies to the highlighted one.
            self._set_status(t("status.ready"))

    @on(Select.Changed, "#set-select")
    def _set_chosen(self, event: Select.Changed) -> None:
        if isinstance(event.value, int) and event.value != self.current:
            self.current = event.value
            self._show_current()

    def _selected_pair(self) -> tuple[int, Pair] | None:
        index = self.query_one(PairsPane).cursor_index()
        if self.pair_set is None or index is None:
            self.notify(t("notice.no_pair"), severity="warning")
            return None
        return index, self.pair_set.pairs[index]

    def action_edit_pair(self) -> None:
        from wordorder_tui.tui.screens import EditPairScreen

        selected = self._selected_pair()
        if selected is None:
            return
        index, pair = selected

        def apply(values: dict[str, str] | None) -> None:
            if values is None or self.pair_set is None:
                return
            if pair.reference and (values["a"], values["b"]) != (pair.a, pair.b):
                # A published score belongs to the texts it was measured on.
                pair.reference = {}
                self.notify(t("notice.reference_removed", id=pair.id))
            pair.category, pair.a, pair.b = values["category"], values["a"], values["b"]
            self._mark_dirty(index)

        self.push_screen(EditPairScreen(t("edit.title", id=pair.id), pair.category, pair.a, pair.b), apply)

    def action_add_pair(self) -> None:
        from wordorder_tui.tui.screens import EditPairScreen

        pair_set = self.pair_set
        if pair_set is None:
            return

        def apply(values: dict[str, str] | None) -> None:
            if values is None:
                return
            pair = Pair(id=new_pair_id(pair_set, values["category"]), category=values["category"],
                        a=values["a"], b=values["b"], language=pair_set.language)
            pair_set.pairs.append(pair)
            self._mark_dirty(len(pair_set.pairs) - 1)

        self.push_screen(EditPairScreen(t("edit.new_title"), "direction", "", ""), apply)

    def action_delete_pair(self) -> None:
        from wordorder_tui.tui.screens import ConfirmScreen

        selected = self._selected_pair()
        if selected is None or self.pair_set is None:
            return
        index, pair = selected
        if len(self.pair_set.pairs) == 1:
            self.notify(t("notice.last_pair"), severity="warning")
            return

        def apply(confirmed: bool | None) -> None:
            if confirmed and self.pair_set is not None:
                self.pair_set.pairs.pop(index)
                self._mark_dirty(max(0, index - 1))

        self.push_screen(ConfirmScreen(t("confirm.delete_pair", id=pair.id)), apply)

    def _mark_dirty(self, cursor: int) -> None:
        self.dirty.add(self.current)
        self._show_current(cursor)

    def action_save_set(self) -> None:
        pair_set = self.pair_set
        if pair_set is None:
            return
        self.run_worker(self._save(self.current, pair_set), group="save", exit_on_error=False,
                        description=t("worker.save", name=pair_set.name))

    async def _save(self, index: int, pair_set: PairSet) -> None:
        try:
            path = await asyncio.to_thread(save_pair_set, pair_set)
        except (PairFileError, OSError) as error:
            log.warning("saving %s failed: %s", pair_set.name, error)
            self.notify(str(error), title=t("error.save"), severity="error", timeout=15)
            return
        self.dirty.discard(index)
        self._show_current(self.query_one(PairsPane).cursor_index() or 0)
        self.notify(t("notice.saved", path=path))

    # Runs

    def action_run(self) -> None:
        if self.store is None or self.registry is None or self.pair_set is None:
            self.notify(t("notice.cannot_run"), severity="warning")
            return
        if any(worker.group == "run" and not worker.is_finished for worker in self.workers):
            self.notify(t("notice.run_in_progress"), severity="warning")
            return

        names = self.query_one(ModelsPane).checked()
        if not names:
            self.notify(t("notice.no_models"), severity="warning")
            return
        try:
            validate_pair_set(self.pair_set)
        except PairFileError as error:
            self.notify(str(error), title=t("error.pair_file"), severity="error", timeout=15)
            return

        reasons = self.query_one(ModelsPane).reasons
        for name in [name for name in names if name in reasons]:
            self.notify(f"{name}: {reasons[name]}", title=t("error.not_ready"), severity="error", timeout=15)
            names.remove(name)
        if not names:
            return

        providers = [self.registry.get(name) for name in names]
        self._start_grid(self.pair_set, names)
        self._progress = {}
        self.run_worker(self._run(self.pair_set, providers), group="run", exclusive=True, exit_on_error=False,
                        description=t("worker.run", name=self.pair_set.name))

    def _start_grid(self, pair_set: PairSet, models: list[str]) -> None:
        """Show an empty grid for a run: one row per pair, one column per model, then the references."""
        references = sorted({model for pair in pair_set.pairs for model in pair.reference})
        headers = [t("column.pair"), *models, *_reference_headers(references)]
        rows = [[pair.id, *([None] * len(models)), *(pair.reference.get(name) for name in references)]
                for pair in pair_set.pairs]
        self._show_grid(headers, rows, models, _grid_subtitle(pair_set.name, references))
        self._grid_text = ""
        self.query_one(ResultsPane).show_view("results-table")

    def _show_grid(self, headers: list[str], rows: list[list[Any]], models: list[str], subtitle: str) -> None:
        self._grid_runs = list(models)
        self._grid_token += 1
        pane = self.query_one(ResultsPane)
        pane.show_grid(headers, rows)
        pane.border_subtitle = subtitle

    async def _run(self, pair_set: PairSet, providers: list[Any]) -> None:
        from wordorder_tui.runner import run_comparison

        assert self.store is not None
        token = self._grid_token

        def on_result(outcome: RunOutcome, row: dict[str, Any]) -> None:
            # A result for a grid the user has since replaced (a history view, another run) is dropped.
            if token == self._grid_token and outcome.model in self._grid_runs:
                column = 1 + self._grid_runs.index(outcome.model)
                self.query_one(ResultsPane).set_score(row["pair_id"], column, row["cosine"])

        outcomes = await run_comparison([pair_set], providers, self.store, service=self.service,
                                        on_progress=self._on_progress, on_result=on_result)
        for outcome in outcomes:
            if outcome.status == "failed":
                self.notify(f"{outcome.model}: {outcome.error}", title=outcome.error_title or t("error.run"),
                            severity="error", timeout=20)
                if token == self._grid_token:
                    self._mark_unscored(pair_set, outcome, MISSING_FAILED)
        if token == self._grid_token:
            self._grid_text = format_runs([outcome.as_json() for outcome in outcomes], "markdown",
                                          {pair_set.name: {pair.id: pair.reference for pair in pair_set.pairs}})
        completed = sum(outcome.status == "completed" for outcome in outcomes)
        self._set_status(t("status.finished", done=completed, total=len(outcomes)))
        self.refresh_history()

    def _mark_unscored(self, pair_set: PairSet, outcome: RunOutcome, mark: str) -> None:
        """Replace the pending marks of a model that stopped early, so they do not look in progress."""
        if outcome.model not in self._grid_runs:
            return
        column = 1 + self._grid_runs.index(outcome.model)
        scored = {row["pair_id"] for row in outcome.results}
        pane = self.query_one(ResultsPane)
        for pair in pair_set.pairs:
            if pair.id not in scored:
                pane.set_text(pair.id, column, mark)

    def _on_progress(self, progress: Progress) -> None:
        self._progress[progress.model] = progress
        parts = [progress_line(item, compact=True) for item in self._progress.values()]
        self._set_status(" · ".join(parts))

        total = sum(item.total for item in self._progress.values())
        done = sum(item.done for item in self._progress.values())
        self.query_one("#progress", Static).update(progress_bar(done, total))

    def _set_status(self, text: str) -> None:
        self.query_one("#status", Static).update(text)

    def action_cancel(self) -> None:
        running = [worker for worker in self.workers if worker.group == "run" and not worker.is_finished]
        if not running:
            self.notify(t("notice.nothing_to_cancel"))
            return
        for worker in running:
            worker.cancel()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.ERROR:
            error = worker.error
            log.error("worker %r failed: %r", worker.description, error)
            self.notify(f"{type(error).__name__}: {error}", title=t("error.worker", task=worker.description),
                        severity="error", timeout=20)
        if worker.group != "run":
            return
        if event.state == WorkerState.CANCELLED:
            self._set_status(t("status.cancelled"))
            self.notify(t("notice.cancelled"), title=t("notice.cancelled_title"))
            self.refresh_history()
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.query_one("#progress", Static).update("")

    # History

    def refresh_history(self) -> None:
        if self.store is not None:
            self.run_worker(self._refresh_history(), group="history", exclusive=True, exit_on_error=False,
                            description=t("worker.history"))

    async def _refresh_history(self) -> None:
        assert self.store is not None
        runs = await asyncio.to_thread(self.store.runs)
        self.query_one(ResultsPane).show_history(runs)

    def action_toggle_history(self) -> None:
        pane = self.query_one(ResultsPane)
        view = "results-table" if pane.view == "history-table" else "history-table"
        pane.show_view(view)
        self.query_one(f"#{view}", DataTable).focus()
        if view == "history-table":
            # Another instance or the CLI may have logged runs since the last look.
            self.refresh_history()

    @on(DataTable.RowSelected, "#history-table")
    def _history_chosen(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.run_worker(self._show_stored(int(event.row_key.value)), group="history", exit_on_error=False,
                            description=t("worker.history"))

    async def _show_stored(self, run_id: int) -> None:
        """Show a past run side by side with the other runs started in the same comparison."""
        assert self.store is not None
        runs = await asyncio.to_thread(self.store.comparison_runs, run_id)
        loaded = [stored_run(run, await asyncio.to_thread(self.store.results, run["id"])) for run in runs]

        grids = comparison_grid(loaded)
        if not grids:
            self.notify(t("notice.empty_run", id=run_id), severity="warning")
            return

        # Rows are [pair, category, a, b, score...]: the grid keeps the pair id and the scores.
        pair_set, headers, rows = grids[0]
        models = [run["model"] for run in loaded]
        self._show_grid([headers[0], *models], [[row[0], *row[4:]] for row in rows], models,
                        f"{pair_set} · {t('results.from_run', id=run_id)}")
        self._grid_text = format_runs(loaded, "markdown")
        self.query_one(ResultsPane).show_view("results-table")

    def action_export(self) -> None:
        text = self._grid_text
        if not text:
            self.notify(t("notice.nothing_to_export"), severity="warning")
            return
        import platformdirs

        folder = Path(platformdirs.user_data_dir(APP_NAME)) / "exports"
        path = folder / f"results-{datetime.datetime.now():%Y%m%d-%H%M%S}.md"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n", encoding="utf-8")
        except OSError as error:
            self.notify(str(error), title=t("error.export"), severity="error")
            return
        self.notify(t("notice.exported", path=path))

    # Quit

    def action_quit_app(self) -> None:
        from wordorder_tui.tui.screens import ConfirmScreen

        if not self.dirty:
            self.exit(0)
            return

        def answer(confirmed: bool | None) -> None:
            if confirmed:
                self.exit(0)

        names = ", ".join(self.pair_sets[index].name for index in sorted(self.dirty))
        self.push_screen(ConfirmScreen(t("confirm.quit_unsaved", names=names)), answer)

    async def action_quit(self) -> None:
        # Ctrl+Q and the palette's Quit ask about unsaved edits too.
        self.action_quit_app()

    def on_unmount(self) -> None:
        if self.store is not None:
            self.store.close()
