"""Modal screens: the pair editor and the quit confirmation."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from wordorder_tui.i18n import t


class EditPairScreen(ModalScreen[dict[str, str] | None]):
    """Edit the category and both texts of one pair; returns the new values, or None when cancelled.

    Texts are returned exactly as typed: no trimming or normalisation.
    """

    BINDINGS = [
        Binding("escape", "cancel", t("key.cancel"), id="edit.cancel"),
        Binding("ctrl+s", "submit", t("key.apply"), id="edit.apply"),
    ]

    def __init__(self, title: str, category: str, a: str, b: str) -> None:
        super().__init__()
        self._title = title
        self._values = {"category": category, "a": a, "b": b}

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-dialog"):
            yield Label(self._title, id="edit-title")
            yield Label(t("edit.category"))
            yield Input(self._values["category"], select_on_focus=False, id="edit-category")
            yield Label(t("edit.a"))
            yield Input(self._values["a"], select_on_focus=False, id="edit-a")
            yield Label(t("edit.b"))
            yield Input(self._values["b"], select_on_focus=False, id="edit-b")
            yield Static("", id="edit-error")
            with Horizontal(id="edit-buttons"):
                yield Button(t("edit.apply"), variant="primary", id="edit-apply")
                yield Button(t("edit.cancel"), id="edit-cancel")
        yield Footer(compact=True, show_command_palette=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        # Enter moves to the next field, and applies from the last one.
        if event.input.id == "edit-b":
            self.action_submit()
        else:
            self.focus_next(Input)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "edit-apply":
            self.action_submit()
        else:
            self.action_cancel()

    def action_submit(self) -> None:
        values = {field: self.query_one(f"#edit-{field}", Input).value for field in ("category", "a", "b")}
        empty = [field for field, value in values.items() if not value.strip()]
        if empty:
            self.query_one("#edit-error", Static).update(t("edit.empty_field", field=t(f"field.{empty[0]}")))
            self.query_one(f"#edit-{empty[0]}", Input).focus()
            return
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """Ask a yes/no question; y or Enter confirms, n or Escape declines."""

    BINDINGS = [
        Binding("y", "answer(True)", t("key.yes"), id="confirm.yes"),
        Binding("n,escape", "answer(False)", t("key.no"), id="confirm.no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self._question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(self._question, id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button(t("confirm.yes"), variant="warning", id="confirm-yes")
                yield Button(t("confirm.no"), id="confirm-no")
        yield Footer(compact=True, show_command_palette=False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
