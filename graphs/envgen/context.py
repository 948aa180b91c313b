"""EnvGen's run-scoped settings (the graph's Context) and the helpers that read them."""
from __future__ import annotations


from dataclasses import dataclass, field
from typing import Any

from langgraph.runtime import Runtime

from envfactory.prompts.registry import use_prompt_dirs
from envfactory.graphs.settings import check_fields, check_prompts_dir, context_from, form_schema





SETTINGS_KEY = "settings_fingerprint"  # config["configurable"] key: a caller's settings_fingerprint of this run

@dataclass(kw_only=True)
class EnvGenContext:
    """Run-scoped settings (Studio renders these as a form)."""

    max_rounds: int = field(default=3, metadata={"description": "repair rounds after the first attempt", "ge": 0})
    max_tokens: int = field(default=400_000, metadata={"description": "model token budget for one synthesis", "ge": 1})
    search_backend: str = field(default="corpus", metadata={"description": "ddgs | corpus | fixture | null | cached:<backend>"})
    catalog_dir: str = field(default="", metadata={"description": "where accepted environments land (empty: the workspace's catalog/, where every command finds them by name)"})
    workspace_dir: str = field(default="", metadata={"description": "where every attempt is written (empty: the workspace's envgen/)"})
    sandbox_seconds: float = field(default=60.0, metadata={"description": "wall-clock limit of one validation", "gt": 0})
    seed: int = field(default=0, metadata={"description": "seed of the deterministic generators"})
    prompt_versions: dict[str, str] = field(default_factory=dict, metadata={"description": "prompt id -> version (default latest)"})
    offline: bool = field(default=False, metadata={"description": "force the offline tier even if models are configured"})
    models: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={"description": "per-role model settings (search, code, test)"})
    chat_models: dict[str, Any] = field(default_factory=dict, metadata={"description": "injected chat-model objects per role (notebooks, tests)"})
    search_options: dict[str, Any] = field(default_factory=dict, metadata={"description": "keyword arguments of the search backend"})
    allow_benchmark_overlap: bool = field(default=False, metadata={"description": "accept tools named like tau2-bench / BFCL tools (contaminates evaluation)"})

    review: bool = field(default=False, metadata={"description": "pause before accepting (a LangGraph interrupt) so a person reads the code's diff against the skeleton and the test results, then resumes with approve, reject, or feedback for another repair round"})
    prompts_dir: str = field(default="", metadata={"description": "a folder of your own prompt templates (added to ENVFACTORY_PROMPTS_PATH; same layout as prompts/templates)"})

    def __post_init__(self) -> None:
        check_fields(self)
        check_prompts_dir(self.prompts_dir)
        if not self.catalog_dir or not self.workspace_dir:  # the workspace of this process (Studio: the server's)
            from envfactory.envs.runtime.workspace import current_workspace
            ws = current_workspace()
            self.catalog_dir = self.catalog_dir or str(ws.catalog_dir)
            self.workspace_dir = self.workspace_dir or str(ws.envgen_dir)

EnvGenContextForm = form_schema(EnvGenContext)  # the graph's context_schema: what Studio draws as a form


def _ctx(runtime: Runtime | None) -> EnvGenContext:
    """The run's checked context (a mapping from Studio or ``invoke(context={...})`` is checked here)."""
    ctx = context_from(runtime.context if runtime is not None else None, EnvGenContext)
    use_prompt_dirs(ctx.prompts_dir)  # this run's own templates, for the agents this node calls
    return ctx

def _model(ctx: EnvGenContext, role: str):
    from envfactory.agents.models import model_for
    return model_for(role, offline=ctx.offline, injected=ctx.chat_models, overrides=ctx.models)

def _retry(ctx: EnvGenContext, role: str):
    """How the role's failed model calls are retried (agents/transient.py)."""
    from envfactory.agents.models import retry_policy_for
    return retry_policy_for(role, ctx.models)

def _version(ctx: EnvGenContext, prompt_id: str) -> str:
    return ctx.prompt_versions.get(prompt_id, "latest")
