"""EnvGen's run-scoped settings (the graph's Context) and the helpers that read them."""
from __future__ import annotations


from dataclasses import dataclass, field
from typing import Any

from langgraph.runtime import Runtime





SETTINGS_KEY = "settings_fingerprint"  # config["configurable"] key: a caller's settings_fingerprint of this run

@dataclass(kw_only=True)
class EnvGenContext:
    """Run-scoped settings (Studio renders these as a form)."""

    max_rounds: int = field(default=3, metadata={"description": "repair rounds after the first attempt"})
    max_tokens: int = field(default=400_000, metadata={"description": "model token budget for one synthesis"})
    search_backend: str = field(default="corpus", metadata={"description": "ddgs | corpus | fixture | null | cached:<backend>"})
    catalog_dir: str = field(default="out/catalog", metadata={"description": "where accepted environments land"})
    workspace_dir: str = field(default="out/envgen", metadata={"description": "where every attempt is written"})
    sandbox_seconds: float = field(default=60.0, metadata={"description": "wall-clock limit of one validation"})
    seed: int = field(default=0, metadata={"description": "seed of the deterministic generators"})
    prompt_versions: dict[str, str] = field(default_factory=dict, metadata={"description": "prompt id -> version (default latest)"})
    offline: bool = field(default=False, metadata={"description": "force the offline tier even if models are configured"})
    models: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={"description": "per-role model settings (search, code, test)"})
    chat_models: dict[str, Any] = field(default_factory=dict, metadata={"description": "injected chat-model objects per role (notebooks, tests)"})
    search_options: dict[str, Any] = field(default_factory=dict, metadata={"description": "keyword arguments of the search backend"})
    allow_benchmark_overlap: bool = field(default=False, metadata={"description": "accept tools named like tau2-bench / BFCL tools (contaminates evaluation)"})

def _ctx(runtime: Runtime | None) -> EnvGenContext:
    return (runtime.context if runtime is not None and runtime.context is not None else None) or EnvGenContext()

def _model(ctx: EnvGenContext, role: str):
    from envfactory.agents.models import model_for
    return model_for(role, offline=ctx.offline, injected=ctx.chat_models, overrides=ctx.models)

def _retry(ctx: EnvGenContext, role: str):
    """How the role's failed model calls are retried (agents/transient.py)."""
    from envfactory.agents.models import retry_policy_for
    return retry_policy_for(role, ctx.models)

def _version(ctx: EnvGenContext, prompt_id: str) -> str:
    return ctx.prompt_versions.get(prompt_id, "latest")
