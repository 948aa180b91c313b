"""verl agent loop: every rollout gets its own isolated episode.

verl's stock ``ToolAgentLoop`` creates a tool instance per *call*, so a stateful environment would
lose its state between two calls of one rollout (or share it across the n rollouts of a prompt).
Here the loop owns the episodes instead:

- ``EpisodeRollout`` (no verl needed, fully tested): opens the row's episodes at the turn's starting
  state, parses hermes/qwen ``<tool_call>{json}</tool_call>`` blocks from each model reply, counts
  malformed ones, executes the calls and returns the tool messages; ``finish()`` gives what
  ``compute_score`` needs (the calls it executed, the malformed count, the final state hashes). It
  also finds up front what would leave the sample unscored (drift, the turn's gold not replaying)
  and, at ``finish()``, a rollout that does not reproduce, so the token loop masks such samples.
- ``run_token_loop``: the token-level state machine (generate, parse, append tool tokens with
  mask 0) written against duck-typed tokenizer and server objects, so it runs here without verl.
- ``verl_agent.EnvFactoryAgentLoop`` (the thin ``AgentLoopBase`` subclass) and ``verl_agent.EpisodeTool``
  (a ``BaseTool`` for verl's stock loop) live in their own module, which imports verl: this one does not,
  so envfactory never needs verl outside a verl worker.

A row shows its own environments' tools (``extra_info.tools``, ``extra_info.tool_selection``); a name
that several exported environments share is shown as ``env__tool`` (``verl_task.exported_name``).

With ``ENVFACTORY_EPISODE_SERVERS`` set (to the name given to ``episode_server.start_episode_servers``)
the loop's episodes live on those Ray actors (``episode_client.RemoteRollout``), not in the loop's process.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
import re
from typing import Any, Awaitable, Callable

from envfactory.envs.runtime.environment import Episode

from envfactory.data.exports.calls import parse_calls
from envfactory.envs.runtime.arguments import json_problem, loads_arguments
from envfactory.data.reward import GoldReplayError
from envfactory.data.exports.verl_task import (StateDriftError, VerlTask, load_env, open_turn_episodes, replay_rollout,
                                               route, turn_gold)

AGENT_NAME = "envfactory_agent"
EXTRA_FIELDS_KEY = "envfactory_rollout"
GROUND_TRUTH = "reward_model.ground_truth"   # the column holding a row's gold calls, as errors name it
_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def parse_tool_calls(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """``<tool_call>`` blocks of one reply -> (calls as {name, arguments}, reasons for malformed blocks).

    An opened block that never closes (the reply was cut) counts as malformed too."""
    calls, bad = [], []
    for body in _BLOCK.findall(text):
        try:
            value = loads_arguments(body.strip())
        except ValueError as exc:  # not JSON, NaN, nesting that would exhaust the stack
            bad.append(f"not JSON ({json_problem(exc)})")
            continue
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            bad.append("a tool call must be a JSON object with a string 'name'")
            continue
        args = value.get("arguments", {})
        if isinstance(args, str):  # some models emit the OpenAI wire form
            try:
                args = loads_arguments(args) if args.strip() else {}
            except ValueError:
                bad.append(f"arguments of {value['name']} are a string that is not JSON")
                continue
        if not isinstance(args, dict):
            bad.append(f"arguments of {value['name']} must be a JSON object")
            continue
        calls.append({"name": value["name"], "arguments": args})
    tail = text.rsplit("</tool_call>", 1)[-1]
    if "<tool_call>" in tail:
        bad.append("a <tool_call> block is never closed")
    return calls, bad


class EpisodeRollout:
    """One rollout of one row: its own episodes, the calls it made, what went wrong.

    Everything that would leave the sample without a score is found here, before or right after the
    rollout, so the token loop masks the sample instead of training on compute_score's placeholder:
    the row's environment no longer loads or drifted, the turn's own gold calls (``gold``, the row's
    ``reward_model.ground_truth``) no longer replay to the state the row was exported with, a tool
    crashed, or the rollout's calls replayed on a fresh copy do not reach the state it ended in."""

    def __init__(self, task: VerlTask, max_calls_per_step: int | None = None, gold: Any = None,
                 tools: list[dict[str, Any]] | None = None):
        self.task = task
        self._shown = tools                       # the row's tool schemas (``extra_info.tools``), as the model sees them
        self.max_calls_per_step = max_calls_per_step
        self.calls: list[dict[str, Any]] = []     # routed and executed, in order
        self.malformed = 0                        # unparseable blocks and unknown tools
        self.failure: str | None = None           # infrastructure failure: the sample gets no score
        self.failure_kind: str | None = None      # which one (a key of verl_reward.FAILURES)
        self.episodes: dict[str, Episode] = {}
        self.envs = {}
        try:
            calls = parse_calls(gold, GROUND_TRUTH) if gold is not None else None   # None: no up-front gold check
        except ValueError as exc:
            calls = None
            self._fail("bad_row", str(exc))
        try:
            self.envs = {name: load_env(name) for name in task.env_names}
            self.episodes = open_turn_episodes(task)
            if calls is not None:  # replayed once per row (cached): GRPO opens n rollouts of it
                turn_gold(task, calls)
        except StateDriftError as exc:
            self._fail("state_drift", f"state drift: {exc}")
        except GoldReplayError as exc:
            self._fail("gold_replay", f"gold replay failed: {exc}")
        except Exception as exc:  # a package that no longer loads is drift too, never the policy's fault
            self._fail("state_drift", f"environment failed to load: {type(exc).__name__}: {exc}")

    def _fail(self, kind: str, message: str) -> None:
        if self.failure is None:
            self.failure, self.failure_kind = message, kind

    @property
    def tools(self) -> list[dict[str, Any]]:
        """OpenAI function specs the chat template shows: the row's own (its environments' tools, shared names
        qualified), else every tool of its environments."""
        if self._shown is not None:
            return self._shown
        return [spec.openai_schema() for env in self.envs.values() for spec in env.tool_specs]

    def _route(self, name: str) -> tuple[str, str] | None:
        if self._shown is not None and name not in {t["function"]["name"] for t in self._shown}:
            return None  # the model may only call what the row shows it
        return route(self.envs, name)

    def execute(self, name: str, arguments: dict[str, Any]) -> str:
        owner = self._route(name)
        if owner is None or owner[0] not in self.episodes:
            self.malformed += 1
            return f"Error: unknown tool {name!r}; available tools: {', '.join(sorted(t['function']['name'] for t in self.tools))}"
        env_name, tool = owner
        res = self.episodes[env_name].call(tool, arguments)
        self.calls.append({"env": env_name, "name": tool, "arguments": arguments})
        if res.error_kind == "internal":
            self._fail("env_crash", f"environment crash: {res.error}")
        return res.text if res.ok else f"Error: {res.error}"

    def step(self, text: str) -> list[dict[str, str]]:
        """Run the calls in one model reply; returns the tool messages ([] when the reply made no call)."""
        calls, bad = parse_tool_calls(text)
        self.malformed += len(bad)
        if self.failure is not None:
            return []  # nothing can be scored any more: end the rollout
        messages = [{"role": "tool", "content": f"Error: malformed tool call: {reason}"} for reason in bad]
        limit = len(calls) if self.max_calls_per_step is None else self.max_calls_per_step
        messages += [{"role": "tool", "content": self.execute(c["name"], c["arguments"])} for c in calls[:limit]]
        messages += [{"role": "tool", "content": f"Error: not executed: at most {limit} calls per step"} for _ in calls[limit:]]
        return messages

    def _check_reproducible(self) -> None:
        """The rollout's calls, replayed on fresh episodes at the turn's starting state, must end where the
        rollout did: compute_score rebuilds the rollout that way, and cannot score one that ends elsewhere."""
        fresh = replay_rollout(self.task, self.calls)
        try:
            for name, ep in self.episodes.items():
                if fresh[name].state_hash() != ep.state_hash():
                    self._fail("not_reproducible", f"replaying the rollout's calls on {name} does not reach the state "
                                                   "the rollout ended in (a tool that is not deterministic)")
                    return
        finally:
            for ep in fresh.values():
                ep.close()

    def finish(self) -> dict[str, Any]:
        """What compute_score needs; closes the episodes. JSON-safe (verl ships it between Ray actors)."""
        if self.failure is None and self.episodes:
            try:
                self._check_reproducible()
            except Exception as exc:  # the environment broke while replaying: no score either
                self._fail("env_crash", f"environment failure while checking the rollout: {type(exc).__name__}: {exc}")
        fields = {"record_key": self.task.record_key, "turn": self.task.turn,
                  "calls": json.dumps(self.calls, ensure_ascii=False), "malformed": self.malformed,
                  "final_hashes": {n: ep.state_hash() for n, ep in self.episodes.items()} if self.failure is None else {},
                  "failure": self.failure, "failure_kind": self.failure_kind}
        self.close()
        return fields

    def close(self) -> None:
        for ep in self.episodes.values():
            ep.close()
        self.episodes = {}


def chat_messages(prompt: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Prompt messages as HF chat templates expect them: the parquet stores tool-call arguments as JSON
    strings and Arrow fills absent keys with null; templates want argument dicts and absent keys."""
    out = []
    for m in prompt:
        m = {k: v for k, v in dict(m).items() if v is not None}
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                fn = dict(c["function"])
                if isinstance(fn.get("arguments"), str):
                    fn["arguments"] = json.loads(fn["arguments"] or "{}")
                calls.append({**dict(c), "function": fn})
            m["tool_calls"] = calls
        else:
            m.pop("tool_calls", None)
        out.append(m)
    return out


def truncate(text: str, limit: int | None, side: str = "middle") -> str:
    if not limit or len(text) <= limit:
        return text
    if side == "left":
        return text[:limit] + "...(truncated)"
    if side == "right":
        return "(truncated)..." + text[-limit:]
    half = limit // 2
    return text[:half] + "...(truncated)..." + text[-half:]


def _ids(value: Any) -> list[int]:
    """Token ids from a chat template or a server reply, whatever wrapper the version returns."""
    if hasattr(value, "token_ids"):
        value = value.token_ids
    if isinstance(value, dict) or hasattr(value, "keys"):
        value = value["input_ids"]
    value = list(value)
    if len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    return list(value)


async def run_token_loop(rollout: EpisodeRollout, messages: list[dict[str, Any]], tokenizer,
                         generate: Callable[[list[int]], Awaitable[Any]], *, response_length: int,
                         max_assistant_turns: int | None = None, max_user_turns: int | None = None,
                         max_tool_response_length: int | None = None, truncate_side: str = "middle",
                         chat_template_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The rollout's token loop: model tokens get mask 1, tool-response tokens mask 0.

    Returns prompt_ids, response_ids, response_mask, num_turns and extra_fields. A rollout whose
    environment failed (drift, crash) keeps its tokens but gets an all-zero mask: it trains nothing,
    and compute_score reports it as unscored."""
    kw = chat_template_kwargs or {}
    messages = chat_messages(messages)
    prompt_ids = _ids(tokenizer.apply_chat_template(messages, tools=rollout.tools, add_generation_prompt=True,
                                                    tokenize=True, **kw))
    # what the template adds before any message (a default system turn in some templates): cut from tool turns
    prefix = _ids(tokenizer.apply_chat_template([{}], add_generation_prompt=False, tokenize=True, **kw))
    response_ids: list[int] = []
    mask: list[int] = []
    logprobs: list[float] | None = []   # kept while the server reports them (verl's TokenOutput.log_probs)
    assistant_turns = user_turns = 0
    while rollout.failure is None:
        reply = await generate(prompt_ids + response_ids)
        out = _ids(reply)
        response_ids += out
        mask += [1] * len(out)
        reply_logprobs = getattr(reply, "log_probs", None)
        logprobs = logprobs + list(reply_logprobs) if logprobs is not None and reply_logprobs is not None else None
        assistant_turns += 1
        if len(mask) >= response_length:
            break
        if max_assistant_turns and assistant_turns >= max_assistant_turns:
            break
        if max_user_turns and user_turns >= max_user_turns:
            break
        tool_messages = rollout.step(tokenizer.decode(out))
        if inspect.isawaitable(tool_messages):  # a RemoteRollout: the episode lives on an episode server
            tool_messages = await tool_messages
        if not tool_messages:
            break
        for m in tool_messages:
            m["content"] = truncate(m["content"], max_tool_response_length, truncate_side)
        tool_ids = _ids(tokenizer.apply_chat_template(tool_messages, add_generation_prompt=True, tokenize=True, **kw))
        tool_ids = tool_ids[len(prefix):] if tool_ids[:len(prefix)] == prefix else tool_ids
        if len(mask) + len(tool_ids) >= response_length:
            break  # the last turn must be the model's, so the end-of-sequence reward reaches its tokens
        response_ids += tool_ids
        mask += [0] * len(tool_ids)
        logprobs = logprobs + [0.0] * len(tool_ids) if logprobs is not None else None
        user_turns += 1
    fields = rollout.finish()
    if inspect.isawaitable(fields):
        fields = await fields
    if fields["failure"] is not None:
        mask = [0] * len(mask)
    if not response_ids:  # the environment failed before generation: one masked placeholder token
        eos = getattr(tokenizer, "eos_token_id", None)
        response_ids, mask, logprobs = [eos if eos is not None else 0], [0], None
    return {"prompt_ids": prompt_ids, "response_ids": response_ids[:response_length],
            "response_mask": mask[:response_length],
            "response_logprobs": logprobs[:response_length] if logprobs else None,
            "num_turns": user_turns + assistant_turns + 1, "extra_fields": {EXTRA_FIELDS_KEY: fields}}


# ---------------------------------------------------------------- what the verl classes (verl_agent) read

def config_value(config: Any, path: str, default: Any = None) -> Any:
    """``a.b.c`` of a verl config (DictConfig, dict or object), ``default`` when absent or null."""
    for part in path.split("."):
        if config is None:
            return default
        config = config.get(part) if hasattr(config, "get") else getattr(config, part, None)
    return default if config is None else config


def register_export_of(config: Any) -> None:
    """Find the export folder from the trainer's config (the tool config and the reward function sit
    in it) and make its environment copies resolve by name in this worker."""
    from envfactory.data.exports.bundle import PACKAGES_FILE, register_export
    for key in ("actor_rollout_ref.rollout.multi_turn.tool_config_path", "custom_reward_function.path"):
        path = config_value(config, key)
        if path and (Path(str(path)).parent / PACKAGES_FILE).is_file():
            register_export(Path(str(path)).parent)


def row_tools(extra_info: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The row's tool schemas (``extra_info.tools``, JSON text), None for rows exported without them."""
    tools = (extra_info or {}).get("tools")
    return json.loads(tools) if isinstance(tools, str) and tools else None
