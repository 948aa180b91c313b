"""QueryGen's run-scoped settings (the graph's Context: Studio renders them as a form), and the
helpers that read them inside nodes and outside a graph."""
from __future__ import annotations


from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph.runtime import Runtime

from envfactory.prompts.registry import use_prompt_dirs
from envfactory.graphs.settings import check_chat_models, check_fields, check_prompts_dir, context_from, form_schema





# Part of every task key: a change in what makes a task (0.2: selectors, the determinacy check, the
# rule-based solver instead of the oracle) gives new keys, so a rerun redoes tasks made before it.
CODE_VERSION = "envfactory-0.2.0"

DEFAULT_SYSTEM_PROMPT = ("You are a helpful assistant with access to tools. Use them to do what the user asks; "
                         "ask for missing details instead of guessing ids.")

@dataclass(kw_only=True)
class QueryGenContext:
    """Run-scoped settings (Studio renders these as a form)."""

    mode: Literal["single", "conv"] = field(default="single", metadata={"description": "single-shot or conversational (user simulator)"})
    rollouts: int = field(default=2, metadata={"description": "k rollouts per task; the pass rate labels difficulty", "ge": 1})
    max_steps: int = field(default=16, metadata={"description": "tool-call steps per rollout", "ge": 1})
    max_tokens: int = field(default=20_000, metadata={"description": "token budget per rollout", "ge": 1})
    pass_threshold: float = field(default=1.0, metadata={"description": "composite reward a rollout needs to pass", "ge": 0, "le": 1})
    tau: float = field(default=0.5, metadata={"description": "reward weight of the trajectory score", "ge": 0, "le": 1})
    prompt_versions: dict[str, str] = field(default_factory=dict, metadata={"description": "prompt id -> version (default latest)"})
    store_path: str | None = field(default="", metadata={"description": "record store (SQLite); finished tasks are skipped on resume (empty: the workspace's records.sqlite; null: none)"})
    offline: bool = field(default=False, metadata={"description": "force the offline tier even if models are configured"})
    models: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={"description": "per-role model settings, e.g. {'query': {'model': 'qwen3-8b', 'base_url': 'http://127.0.0.1:8000/v1'}}"})
    persona: str = field(default="a regular customer of the service, polite and brief", metadata={"description": "who the simulated user is"})
    chat_models: dict[str, Any] = field(default_factory=dict, metadata={"description": "injected chat-model objects per role (notebooks, tests)"})
    step_graph: bool = field(default=False, metadata={"description": "run each chain's five steps as a subgraph, so Studio streams every step as its own node (costs ~4 ms CPU per task; threads mode only)"})
    tools: Literal["direct", "mcp"] = field(default="direct", metadata={"description": "how model rollouts reach in-process environments: tools that call the episode directly, or in-memory MCP sessions (same tools, messages and errors; MCP costs ~1 ms more CPU per call)"})
    slots_per_wave: int = field(default=1024, metadata={"description": "task slots sent at once; the next wave starts when one is done (LangGraph's per-task cost grows with the slots pending, so waves keep it flat in n)", "ge": 1})
    workers: int = field(default=0, metadata={"description": "worker processes that run chains, each many at once on its event loop (0: threads in this process); one per core uses every core", "ge": 0})
    executor: Literal["threads", "ray"] = field(default="threads", metadata={"description": "where chains run: 'threads' (this process, or its worker processes with workers > 0) or 'ray' (Ray async actors, one per CPU of the cluster unless workers says how many; pip install 'envfactory[ray]')"})
    ray_address: str | None = field(default=None, metadata={"description": "executor 'ray': the cluster to join ('auto': the one `ray start` runs here; 'ray://host:10001'); None starts a local Ray instance on loopback"})
    prompts_dir: str = field(default="", metadata={"description": "a folder of your own prompt templates (added to ENVFACTORY_PROMPTS_PATH; same layout as prompts/templates)"})

    def __post_init__(self) -> None:
        check_fields(self)
        check_prompts_dir(self.prompts_dir)
        check_chat_models(self.chat_models)
        if self.store_path == "":  # the workspace of this process (Studio: the server's), so runs reach export
            from envfactory.envs.runtime.workspace import current_workspace
            self.store_path = str(current_workspace().store_path)

QueryGenContextForm = form_schema(QueryGenContext)  # the graphs' context_schema: what Studio draws as a form


def _ctx(runtime: Runtime | None) -> QueryGenContext:
    """The run's checked context (a mapping from Studio or ``invoke(context={...})`` is checked here)."""
    ctx = context_from(runtime.context if runtime is not None else None, QueryGenContext)
    use_prompt_dirs(ctx.prompts_dir)  # this run's own templates, for the agents this node calls
    return ctx

class ContextRuntime:
    """What the steps read of LangGraph's ``Runtime``, the context alone: for running the steps
    outside a graph (worker processes, benchmarks, tests)."""

    def __init__(self, context: QueryGenContext):
        self.context = context
