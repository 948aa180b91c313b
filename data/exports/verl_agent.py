"""The verl classes of our agent loop, at module level: import this module only where verl runs.

verl finds an agent loop by the ``_target_`` of its registry entry (``agent_loop.yaml``) and builds it
with ``hydra.utils.instantiate``, once per rollout; a tool by the ``class_name`` of the tool config.
Both must be importable by that dotted name in every worker, so the classes live at module level here
(a class made inside a function is ``...<locals>.X``, which hydra cannot locate, and ``register`` would
put that name into verl's registry over the YAML's). verl stays out of envfactory's own imports:
nothing else in the package imports this module.

- ``EnvFactoryAgentLoop``: each rollout (each of GRPO's n samples of a prompt) owns its episodes
  (``verl_loop.EpisodeRollout``) and runs ``verl_loop.run_token_loop``.
- ``EpisodeTool``: a ``BaseTool`` for users who keep verl's stock ``tool_agent`` loop: it keys one episode
  on the request id instead of the per-call tool instance.
"""
from __future__ import annotations

import json
import uuid
from typing import Any

try:
    from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
    from verl.tools.base_tool import BaseTool
except ImportError as exc:  # pragma: no cover - depends on the training environment
    raise ImportError(f"envfactory's verl agent loop needs verl installed where it runs ({exc})") from exc
try:
    from verl.tools.schemas import ToolResponse
except ImportError:  # older verl: tools return plain text
    ToolResponse = None

from envfactory.envs.runtime.lru import BoundedCache

from envfactory.data.exports.episode_client import RemoteRollout, servers_from_environment
from envfactory.data.exports.bundle import register_export
from envfactory.data.exports.verl_loop import (AGENT_NAME, EXTRA_FIELDS_KEY, EpisodeRollout, config_value,
                                               register_export_of, row_tools, run_token_loop)
from envfactory.data.exports.verl_task import VerlTask, task_from_tools_kwargs

MULTI_TURN = "actor_rollout_ref.rollout.multi_turn"


@register(AGENT_NAME)  # the same dotted name agent_loop.yaml gives: importing this module is enough too
class EnvFactoryAgentLoop(AgentLoopBase):
    """Each rollout (each of GRPO's n samples of a prompt) owns its episodes."""

    def __init__(self, *args, tools: Any = None, **kwargs):
        super().__init__(*args, **kwargs)  # ``tools``: verl's global tool list; rows carry their own
        register_export_of(getattr(self, "config", None))  # the export's own environment copies, by name

    async def run(self, sampling_params: dict[str, Any], **kwargs) -> AgentLoopOutput:
        config = self.config
        extra_info = kwargs.get("extra_info") or {}
        task = VerlTask.from_extra_info(extra_info)
        # the turn's gold (verl hands every row column to the loop): replayed up front, so a row whose gold
        # no longer replays is masked here rather than trained on compute_score's placeholder
        gold = (kwargs.get("reward_model") or {}).get("ground_truth")
        servers = servers_from_environment()  # ENVFACTORY_EPISODE_SERVERS: episodes on the cluster's servers
        max_calls = config_value(config, f"{MULTI_TURN}.max_parallel_calls")
        rollout = (await RemoteRollout.open(servers, extra_info, gold, max_calls) if servers is not None
                   else EpisodeRollout(task, max_calls, gold=gold, tools=row_tools(extra_info)))
        request_id = uuid.uuid4().hex

        async def generate(prompt_ids: list[int]):
            return await self.server_manager.generate(request_id=request_id, prompt_ids=prompt_ids,
                                                      sampling_params=sampling_params)

        out = await run_token_loop(
            rollout, list(kwargs["raw_prompt"]), self.tokenizer, generate,
            response_length=config_value(config, "actor_rollout_ref.rollout.response_length", 4096),
            max_assistant_turns=config_value(config, f"{MULTI_TURN}.max_assistant_turns"),
            max_user_turns=config_value(config, f"{MULTI_TURN}.max_user_turns"),
            max_tool_response_length=config_value(config, f"{MULTI_TURN}.max_tool_response_length"),
            truncate_side=config_value(config, f"{MULTI_TURN}.tool_response_truncate_side", "middle"),
            chat_template_kwargs=dict(config_value(config, "data.apply_chat_template_kwargs", {}) or {}))
        return AgentLoopOutput(prompt_ids=out["prompt_ids"], response_ids=out["response_ids"],
                               response_mask=out["response_mask"], response_logprobs=out["response_logprobs"],
                               num_turns=out["num_turns"], metrics={}, extra_fields=out["extra_fields"])


def _response(text: str | None = None):
    return text if ToolResponse is None else (ToolResponse(text=text) if text is not None else ToolResponse())


class EpisodeTool(BaseTool):
    """For verl's stock ToolAgentLoop: one episode per request id, not per call instance.

    The row's task comes from its ``tools_kwargs`` (one ``envfactory`` entry, the same key on every row,
    so the parquet column has no null entries), which the stock loop keeps on ``agent_data``."""

    # rollouts keyed by verl request id, bounded (the stock loop never says when a rollout ends)
    # (evicted under the cache's lock: only close, no replay)
    rollouts = BoundedCache(4096, on_evict=lambda rollout: rollout.close())

    def __init__(self, config: dict, tool_schema):
        super().__init__(config, tool_schema)
        if (config or {}).get("export_dir"):  # written by the export: its own environment copies resolve by name
            register_export((config or {})["export_dir"])

    async def create(self, instance_id: str | None = None, **kwargs):
        return instance_id or uuid.uuid4().hex, _response()

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs):
        agent_data = kwargs.get("agent_data")
        request_id = getattr(agent_data, "request_id", None) or instance_id
        task = task_from_tools_kwargs(getattr(agent_data, "tools_kwargs", None))
        rollout = self.rollouts.get_or_make(request_id, lambda: EpisodeRollout(task), hold_lock=True)
        text = rollout.execute(self.name, parameters) if rollout.failure is None else f"Error: {rollout.failure}"
        if agent_data is not None and isinstance(getattr(agent_data, "extra_fields", None), dict):
            agent_data.extra_fields[EXTRA_FIELDS_KEY] = {
                "record_key": task.record_key, "turn": task.turn, "calls": json.dumps(rollout.calls),
                "malformed": rollout.malformed, "failure": rollout.failure, "failure_kind": rollout.failure_kind,
                "final_hashes": {n: ep.state_hash() for n, ep in rollout.episodes.items()}}
        return _response(text), 0.0, {}

    async def release(self, instance_id: str, **kwargs) -> None:
        return None
