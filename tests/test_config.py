"""Tests of the model configuration file: parsing, validation messages and its location."""

from __future__ import annotations

from pathlib import Path

import pytest

from wordorder_tui.config import ConfigError, ModelConfig, check_options, load_config
from wordorder_tui.paths import default_config_path
from wordorder_tui.providers.registry import BUILTIN_MODELS, Registry


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_remote_model(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[models.jina-text]
provider = "jina"
model = "jina-embeddings-v3"
base_url = "http://127.0.0.1:9000/v1"
api_key_env = "MY_JINA_KEY"
headers = { "X-Tenant" = "lab" }
batch_size = 16
concurrency = 2
requests_per_minute = 120
connect_timeout = 2.5
read_timeout = 90
max_retries = 3
[models.jina-text.options]
task = "text-matching"
dimensions = 512
late_chunking = false
""",
    )

    config = load_config(path)["jina-text"]

    assert config.provider == "jina"
    assert config.base_url == "http://127.0.0.1:9000/v1"
    assert config.api_key_env == "MY_JINA_KEY"
    assert config.headers == {"X-Tenant": "lab"}
    assert config.options == {"task": "text-matching", "dimensions": 512, "late_chunking": False}
    assert (config.batch_size, config.concurrency, config.max_retries) == (16, 2, 3)
    assert (config.requests_per_minute, config.connect_timeout, config.read_timeout) == (120, 2.5, 90)
    assert config.source == str(path)


def test_config_env_moves_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[models.local]\nprovider = "ollama"\nmodel = "nomic-embed-text"\n')
    monkeypatch.setenv("WORDORDER_CONFIG", str(path))

    configs = load_config(default_config_path())

    assert default_config_path() == path
    assert configs["local"].model == "nomic-embed-text"


def test_missing_file_empty(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.toml") == {}


# Each invalid entry: (TOML body of [models.bad], text the message must contain)
INVALID = {
    "unknown provider": ('provider = "pinecone"\nmodel = "m"\n', "field 'provider' is 'pinecone'"),
    "bad url": ('provider = "openai"\nmodel = "m"\nbase_url = "localhost:8000"\n', "field 'base_url'"),
    "wrong type": ('provider = "openai"\nmodel = "m"\nconcurrency = "4"\n', "field 'concurrency' must be int"),
    "bool as int": ('provider = "openai"\nmodel = "m"\nbatch_size = true\n', "field 'batch_size' must be int"),
    "unknown field": ('provider = "openai"\nmodel = "m"\napi_key = "sk-1"\n', "unknown field 'api_key'"),
    "unknown option": (
        'provider = "openai"\nmodel = "m"\noptions = { task = "text-matching" }\n',
        "unknown option 'options.task' for provider 'openai'",
    ),
    "option type": (
        'provider = "jina"\nmodel = "jina-embeddings-v3"\noptions = { dimensions = "256" }\n',
        "option 'options.dimensions' must be int",
    ),
    "option choice": (
        'provider = "openai"\nmodel = "m"\noptions = { encoding_format = "int8" }\n',
        "option 'options.encoding_format' is 'int8'; expected one of float, base64",
    ),
    "option minimum": (
        'provider = "gemini"\nmodel = "gemini-embedding-001"\noptions = { outputDimensionality = 0 }\n',
        "option 'options.outputDimensionality' must be at least 1",
    ),
    "jina v2 task": (
        'provider = "jina"\nmodel = "jina-embeddings-v2-base-en"\noptions = { task = "text-matching" }\n',
        "option 'options.task' is not accepted by jina-embeddings-v2-base-en",
    ),
    "jina v2 dimensions": (
        'provider = "jina"\nmodel = "jina-embeddings-v2-small-en"\noptions = { dimensions = 256 }\n',
        "option 'options.dimensions' is not accepted by jina-embeddings-v2-small-en",
    ),
    "ada dimensions": (
        'provider = "openai"\nmodel = "text-embedding-ada-002"\noptions = { dimensions = 256 }\n',
        "option 'options.dimensions' is not accepted by text-embedding-ada-002",
    ),
    "cohere without input_type": (
        'provider = "cohere"\nmodel = "embed-english-v3.0"\n',
        "option 'options.input_type' is missing",
    ),
    "cohere v3 output_dimension": (
        'provider = "cohere"\nmodel = "embed-english-v3.0"\n'
        'options = { input_type = "clustering", output_dimension = 256 }\n',
        "option 'options.output_dimension' is not accepted by embed-english-v3.0",
    ),
    "batch over limit": (
        'provider = "cohere"\nmodel = "embed-v4.0"\nbatch_size = 200\noptions = { input_type = "clustering" }\n',
        "field 'batch_size' is 200, but cohere accepts at most 96",
    ),
    "negative timeout": ('provider = "tei"\nmodel = "m"\nread_timeout = -1\n', "field 'read_timeout' must be positive"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_entry_rejected(case: str, tmp_path: Path) -> None:
    body, expected = INVALID[case]
    path = write(tmp_path, "[models.bad]\n" + body)

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    message = str(caught.value)
    assert message.startswith(f"{path}: models.bad: ")
    assert expected in message


def test_builtins_pass_checks() -> None:
    for config in BUILTIN_MODELS:
        check_options(config)


def test_registry_lists_config_models(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[models.vllm]\nprovider = "openai"\nmodel = "bge-m3"\nbase_url = "http://127.0.0.1:8000/v1"\n'
    )

    registry = Registry(load_config(path))

    assert "vllm" in registry.names()
    assert registry.get("vllm").kind == "openai"
    assert registry.get("vllm").readiness().ready


def test_code_config_checked_at_load() -> None:
    config = ModelConfig(
        name="v2", provider="jina", model="jina-embeddings-v2-base-en", options={"late_chunking": True}
    )

    with pytest.raises(ConfigError) as caught:
        check_options(config)

    assert "built-in: models.v2: option 'options.late_chunking'" in str(caught.value)
