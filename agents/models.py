"""Per-role model configuration, and the offline tier when none is configured.

Roles: search, code, test, query, refine, user_simulator, rollout, judge. Sources, lowest to
highest priority: defaults -> a YAML/JSON file (argument or ``ENVFACTORY_MODELS``) -> environment
variables (``ENVFACTORY_MODEL``, ``ENVFACTORY_BASE_URL``, ``ENVFACTORY_API_KEY_ENV`` for every role;
``ENVFACTORY_<ROLE>_MODEL`` ... per role) -> explicit overrides -> injected chat-model objects.
Keys are never stored: a config names the environment variable that holds one.
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from envfactory.agents.transient import RetryPolicy
from envfactory.prompts.registry import PromptRef

ROLES = ("search", "code", "test", "query", "refine", "user_simulator", "rollout", "judge")
Role = Literal["search", "code", "test", "query", "refine", "user_simulator", "rollout", "judge"]
_FIELDS = ("provider", "model", "base_url", "api_key_env", "temperature", "max_tokens", "timeout", "max_retries",
           "retry_wait", "retry_wait_max")
_PROVIDERS = {"anthropic": "ChatAnthropic", "ollama": "ChatOllama", "google_genai": "ChatGoogleGenerativeAI",
              "mistralai": "ChatMistralAI", "groq": "ChatGroq", "fireworks": "ChatFireworks"}


class ModelConfig(BaseModel):
    provider: str = "openai"           # "openai" = any OpenAI-compatible endpoint (vLLM, SGLang, Ollama, llama.cpp)
    model: str | None = None           # None: no model, the step runs its offline tier
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.7
    max_tokens: int | None = 2048
    timeout: float = 120.0
    # Transient failures (HTTP 408/409/429/5xx, connection resets, timeouts) are retried by our own
    # layer (agents/transient.py) for every provider and injected model; clients built here get
    # max_retries=0 so attempts never multiply. What still fails leaves the task "not done".
    max_retries: int = Field(4, ge=0, le=20)
    retry_wait: float = Field(0.5, ge=0, le=600)       # first backoff in seconds, doubling with jitter
    retry_wait_max: float = Field(20.0, ge=0, le=600)  # longest wait, a server's Retry-After included

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(retries=self.max_retries, wait=self.retry_wait, wait_max=self.retry_wait_max)


class GeneratedBy(BaseModel):
    """Attached to every step's output so scripted or template output is never taken for model output."""

    tier: Literal["model", "offline"]
    role: str
    model: str | None = None
    implementation: str | None = None  # for the offline tier: which deterministic implementation
    prompt: PromptRef | None = None


class ModelSettings(BaseModel):
    roles: dict[str, ModelConfig] = Field(default_factory=lambda: {r: ModelConfig() for r in ROLES})
    prices: dict[str, dict[str, float]] = {}   # model -> {"input": $/1M tokens, "output": $/1M tokens}

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None,
             environ: dict[str, str] | None = None) -> "ModelSettings":
        env = os.environ if environ is None else environ
        data: dict[str, dict[str, Any]] = {r: {} for r in ROLES}
        prices: dict[str, dict[str, float]] = {}
        path = path or env.get("ENVFACTORY_MODELS")
        if path:
            raw = Path(path).read_text(encoding="utf-8")
            loaded = json.loads(raw) if str(path).endswith(".json") else yaml.safe_load(raw)
            if not isinstance(loaded, dict):
                raise ValueError(f"model config {path}: expected a mapping with 'default', role names and 'prices'")
            unknown = set(loaded) - set(ROLES) - {"default", "prices"}
            if unknown:
                raise ValueError(f"model config {path}: unknown role(s) {sorted(unknown)}; roles are {', '.join(ROLES)}")
            for role in ROLES:
                data[role].update(loaded.get("default") or {})
                data[role].update(loaded.get(role) or {})
            prices = loaded.get("prices") or {}
        for role in ROLES:
            for fld in _FIELDS:
                shared, own = env.get(f"ENVFACTORY_{fld.upper()}"), env.get(f"ENVFACTORY_{role.upper()}_{fld.upper()}")
                if shared is not None:
                    data[role][fld] = shared
                if own is not None:
                    data[role][fld] = own
            data[role].update((overrides or {}).get(role, {}))
        return cls(roles={r: ModelConfig(**data[r]) for r in ROLES}, prices=prices)


def resolve_model(role: str, settings: ModelSettings | None = None, injected: dict[str, Any] | None = None,
                  environ: dict[str, str] | None = None):
    """The chat model for ``role``, or None for the offline tier. Injected models win."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    if injected and injected.get(role) is not None:
        return injected[role]
    settings = settings or ModelSettings.load(environ=environ)
    cfg = settings.roles[role]
    if not cfg.model:
        return None
    env = os.environ if environ is None else environ
    api_key = env.get(cfg.api_key_env)
    if cfg.provider == "openai":
        from langchain_openai import ChatOpenAI
        return ChatOpenAI(model=cfg.model, base_url=cfg.base_url, api_key=api_key or "not-needed",
                          temperature=cfg.temperature, max_tokens=cfg.max_tokens, timeout=cfg.timeout,
                          max_retries=0)  # retried by agents/transient.py with this role's policy
    class_name = _PROVIDERS.get(cfg.provider)
    if class_name is None:
        raise ValueError(f"unknown provider {cfg.provider!r} for role {role}; use 'openai' for any OpenAI-compatible "
                         f"endpoint or one of {', '.join(sorted(_PROVIDERS))}")
    try:
        module = importlib.import_module(f"langchain_{cfg.provider}")
    except ImportError:
        raise ValueError(f"provider {cfg.provider!r} for role {role} needs the package "
                         f"langchain-{cfg.provider.replace('_', '-')}: pip install it") from None
    kwargs = {"model": cfg.model, "temperature": cfg.temperature, "max_tokens": cfg.max_tokens, "timeout": cfg.timeout,
              "max_retries": 0}
    if api_key:
        kwargs["api_key"] = api_key
    if cfg.base_url:
        kwargs["base_url"] = cfg.base_url
    return getattr(module, class_name)(**kwargs)


_run_models: dict[tuple[str, str], Any] = {}  # one client per role and settings


def _settings_environ() -> list[tuple[str, str]]:
    """The ``ENVFACTORY_*`` environment variables, sorted. Read from ``os.environ``'s raw mapping
    where it has one (POSIX: bytes), decoding only the matching names: ``os.environ.items()``
    decodes every variable, which cost ~4% of a task's CPU (two lookups per step and role)."""
    raw = getattr(os.environ, "_data", None)
    if isinstance(raw, dict) and raw and all(isinstance(k, bytes) for k in list(raw)[:1]):
        return sorted((os.fsdecode(k), os.fsdecode(v)) for k, v in raw.items() if k.startswith(b"ENVFACTORY_"))
    return sorted((k, v) for k, v in os.environ.items() if k.startswith("ENVFACTORY_"))


def model_for(role: str, *, offline: bool = False, injected: dict[str, Any] | None = None,
              overrides: dict[str, dict[str, Any]] | None = None):
    """A graph step's model from its Context: None when forced offline, else an injected object, else
    the configured model (one client per role and settings, shared by every task of a run)."""
    if offline:
        return None
    if injected and injected.get(role) is not None:
        return injected[role]
    # The environment is part of the key: a notebook or server process that changes ENVFACTORY_MODEL (or
    # the models file) between runs gets the model it now names, not the one it built first.
    key = (role, json.dumps([overrides or {}, _settings_environ()], sort_keys=True, default=str))
    if key not in _run_models:
        _run_models[key] = resolve_model(role, ModelSettings.load(overrides=overrides))
    return _run_models[key]


_run_policies: dict[tuple[str, str], RetryPolicy] = {}


def retry_policy_for(role: str, overrides: dict[str, dict[str, Any]] | None = None) -> RetryPolicy:
    """How a step retries its role's transient model failures (injected models too), from the same
    settings as ``model_for`` (defaults, models file, environment variables, ``overrides``)."""
    key = (role, json.dumps([overrides or {}, _settings_environ()], sort_keys=True, default=str))
    if key not in _run_policies:
        _run_policies[key] = ModelSettings.load(overrides=overrides).roles[role].retry_policy()
    return _run_policies[key]


def model_name(model: Any) -> str:
    """The name a chat-model object reports (for provenance)."""
    return str(getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__)


def generated_by(role: str, model: Any, prompt: PromptRef | None = None, offline: str | None = None) -> GeneratedBy:
    if model is None:
        return GeneratedBy(tier="offline", role=role, implementation=offline, prompt=None)
    return GeneratedBy(tier="model", role=role, model=model_name(model), prompt=prompt)
