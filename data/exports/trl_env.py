"""TRL ``GRPOTrainer(environment_factory=...)``: our environments as classes TRL steps itself.

TRL makes one instance per rollout, calls ``reset(**row)`` with the dataset row, shows the
instance's public methods to the model as tools (their schemas come from type hints and
Google-style docstrings, via ``transformers.utils.get_json_schema``) and calls them with the
arguments the model wrote. Here:

- ``environment_class(name)`` builds one class per environment whose public methods are the
  environment's tools, with typed signatures and docstrings generated from ``env.json``;
- ``reset`` opens a fresh isolated episode at the row's initial state (the environment's seed
  state, plus the gold calls of earlier user turns replayed) and replays the gold calls once per
  task to get the gold change set;
- every tool method runs on that episode and returns JSON text; errors come back as JSON text
  too (``{"error": ..., "kind": ...}``), so the model reads why a call failed;
- ``make_reward_func()`` is the reward: our composite verifier (``data/reward.py``) over the calls
  the episode received and its final state against the row's gold calls, with a format penalty
  for tool calls TRL could not parse or could not route to a tool.

``to_trl(record)`` writes the dataset rows: one per user turn (cut and checked by ``turns.cut_turns``,
like the verl rows: records that fail its checks are skipped with the reason), with the conversation so far as
``prompt``, ``environment`` (TRL's routing column for a dict of factories), the gold calls of the
turn and of the earlier turns as JSON text (JSON text keeps Arrow from merging argument dicts
of different tools into one struct).
"""
from __future__ import annotations

import inspect
import json
import re
from typing import Any, Callable, Literal, Sequence, Union

from envfactory.envs.runtime.cache import load_env
from envfactory.envs.runtime.lru import BoundedCache

from envfactory.data.records import TrajectoryRecord
from envfactory.data.reward import Call, GoldReference, GoldReplayError, RewardConfig, RewardResult, replay_gold, score_episodes
from envfactory.data.exports.calls import parse_calls
from envfactory.data.exports.turns import cut_turns
from envfactory.data.exports.verl_task import replay_prefix

RESERVED = {"reset", "get_reward"}   # TRL treats these names specially; they can never be tools
_JSON_TYPES: dict[str, Any] = {"integer": int, "number": float, "string": str, "boolean": bool, "object": dict}


# ---------------------------------------------------------------- tool methods from JSON schemas

def _annotation(schema: dict[str, Any]) -> Any:
    """A type hint that ``get_json_schema`` turns back into (the typed core of) this schema."""
    if schema.get("enum"):
        return Literal[tuple(schema["enum"])]
    kind = schema.get("type")
    if isinstance(kind, list):
        hints = tuple(_annotation({**schema, "type": k}) for k in kind if k != "null")
        hint = hints[0] if len(hints) == 1 else Union[hints]
        return hint | None if "null" in kind else hint
    if kind == "array":
        return list[_annotation(schema["items"])] if isinstance(schema.get("items"), dict) else list
    return _JSON_TYPES.get(kind, Any)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def _describe(schema: dict[str, Any]) -> str:
    """The parameter's description plus the constraints a type hint cannot carry (ranges, formats, defaults)."""
    notes = []
    if "format" in schema:
        notes.append(f"format {schema['format']}")
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if "exclusiveMinimum" in schema and "minimum" not in schema:
        notes.append(f"more than {low}" + (f", at most {high}" if high is not None else ""))
    elif low is not None and high is not None:
        notes.append(f"{low} to {high}")
    elif low is not None:
        notes.append(f"at least {low}")
    elif high is not None:
        notes.append(f"at most {high}")
    if "multipleOf" in schema:
        notes.append(f"a multiple of {schema['multipleOf']}")
    if "minLength" in schema or "maxLength" in schema:
        notes.append(f"{schema.get('minLength', 0)} to {schema['maxLength']} characters" if "maxLength" in schema
                     else f"at least {schema['minLength']} characters")
    if "maxItems" in schema:
        notes.append(f"at most {schema['maxItems']} items")
    if "pattern" in schema and "format" not in schema:
        notes.append(f"matching {schema['pattern']}")
    if "default" in schema:
        notes.append(f"default {json.dumps(schema['default'])}")
    text = _one_line(schema.get("description", "")) or "no description"
    return f"{text} ({'; '.join(notes)})" if notes else text


def _tool_method(spec) -> Callable[..., str]:
    """A method ``name(self, **arguments) -> str`` that presents the tool's typed signature.

    It takes ``**arguments`` underneath so a call with a wrong or missing argument reaches the
    environment, which answers with a precise error the model can read (and the verifier counts),
    instead of a Python TypeError.
    """
    schema = spec.input_schema
    props: dict[str, dict[str, Any]] = schema.get("properties", {})
    required = set(schema.get("required", []))
    annotations: dict[str, Any] = {}
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    optional = []
    for name, prop in props.items():
        if not name.isidentifier() or name in ("self",):
            raise ValueError(f"tool {spec.name!r}: argument {name!r} cannot be a Python parameter name")
        annotations[name] = _annotation(prop)
        if name in required:
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotations[name]))
        else:  # None means "not given": it is dropped before the call, so the tool's own default applies
            optional.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                              annotation=annotations[name]))
    lines = [_one_line(spec.description)]
    if props:
        lines += ["", "Args:"] + [f"    {name}: {_describe(prop)}" for name, prop in props.items()]

    def tool(self, **arguments):
        return self._call(tool.__name__, arguments)

    tool.__name__ = spec.name
    tool.__doc__ = "\n".join(lines)
    tool.__signature__ = inspect.Signature(params + optional)
    tool.__annotations__ = annotations
    return tool


# ---------------------------------------------------------------- the environment classes

# Initial states and gold references shared by the instances of one class: GRPO rolls out the same
# prompt ``num_generations`` times, and the gold replay is deterministic.
TASK_CACHE_SIZE = 256

class TRLEnvironment:
    """Base of the generated classes: one instance per rollout, one isolated episode per reset."""

    _environment = None                 # set on each generated class: the loaded Environment
    _reward_config: RewardConfig = RewardConfig()
    _cache: BoundedCache

    def __init__(self):
        self._episode = None
        self._gold: GoldReference | None = None
        self._failure: str | None = None     # why this rollout cannot be scored (infrastructure, not the policy)
        self._task_id: str | None = None

    # TRL calls this with every column of the row (``environment`` excepted in dict mode). A row without
    # ``gold_calls`` cannot be scored (an empty default would score it against no calls at all); one without
    # ``prefix_calls`` starts from the initial state, as a first turn does.
    def reset(self, prompt: Any = None, query: str | None = None, task_id: str | None = None,
              gold_calls: Any = None, prefix_calls: Any = "[]", initial_state_hash: str | None = None,
              **_other_columns) -> str | None:
        env = self._environment
        if self._episode is not None:
            self._episode.close()
        self._failure, self._gold, self._task_id = None, None, task_id
        state = None
        try:
            if initial_state_hash and initial_state_hash != env.initial_hash:
                raise GoldReplayError(f"task {task_id}: the row was made from another initial state of {env.name} "
                                      f"({initial_state_hash[:12]}, now {env.initial_hash[:12]}); re-export it")
            prefix_text = prefix_calls if isinstance(prefix_calls, str) else json.dumps(prefix_calls)
            gold_text = gold_calls if isinstance(gold_calls, str) else json.dumps(gold_calls)
            state = self._cache.get_or_make(("state", prefix_text), lambda: self._replay_prefix(prefix_text))
            self._gold = self._cache.get_or_make(("gold", prefix_text, gold_text), lambda: replay_gold(
                {env.name: env}, parse_calls(gold_text, "gold_calls"), {env.name: state} if state else None))
        except (GoldReplayError, ValueError, KeyError) as exc:
            self._failure = str(exc)
        self._episode = env.episode(state=state)
        return None if prompt else query

    def _replay_prefix(self, prefix_text: str) -> bytes | None:
        """The state a later user turn starts from: the seed state plus the earlier turns' gold calls."""
        calls = parse_calls(prefix_text, "prefix_calls")
        if not calls:
            return None
        env = self._environment
        episodes = replay_prefix({env.name: env}, calls)
        try:
            ep = episodes[env.name]
            return ep.conn.serialize() if hasattr(ep, "conn") else ep.snapshot()  # imported classes: a snapshot
        finally:
            episodes[env.name].close()

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        if self._episode is None:
            return json.dumps({"error": "the environment has not been reset", "kind": "internal"})
        arguments = {k: v for k, v in arguments.items() if v is not None}
        res = self._episode.call(name, arguments)
        if res.ok:
            return res.text
        return json.dumps({"error": res.error, "kind": res.error_kind}, ensure_ascii=False)

    # -- for the reward function and the logs (private: TRL would show public methods as tools)
    def _score(self, n_malformed: int = 0) -> RewardResult:
        if self._failure or self._gold is None or self._episode is None:
            return RewardResult(score=None, failure=self._failure or "the environment was not reset")
        return score_episodes(self._gold, {self._environment.name: self._episode}, n_malformed=n_malformed,
                              cfg=self._reward_config)

    def _calls(self) -> list:
        return list(self._episode.calls) if self._episode is not None else []

    @classmethod
    def _tool_names(cls) -> set[str]:
        return set(cls._environment.tools)


class RemoteTRLEnvironment(TRLEnvironment):
    """Base of the generated classes whose episodes live on episode servers
    (``environment_factories(..., servers=...)``): the same tools, reset and reward, each a call to
    the server that holds this rollout's episode."""

    _servers = None                     # set on each generated class: episode_client.EpisodeServers

    def __init__(self):
        super().__init__()
        self._remote: str | None = None
        self._scored: dict[str, Any] | None = None

    def reset(self, **row) -> str | None:
        self._release()
        opened = self._servers.reset({**row, "environment": self._environment.name,
                                      "reward_config": self._reward_config.model_dump()})
        self._remote, self._failure, self._task_id = opened["episode"], opened["failure"], row.get("task_id")
        return None if row.get("prompt") else row.get("query")

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        from envfactory.data.exports.episode_client import EpisodeReleased
        if self._remote is None:
            return json.dumps({"error": "the environment has not been reset", "kind": "internal"})
        try:
            return self._servers.call(self._remote, name, {k: v for k, v in arguments.items() if v is not None})
        except EpisodeReleased as exc:
            return json.dumps({"error": str(exc), "kind": "internal"})

    def _score(self, n_malformed: int = 0) -> RewardResult:
        if self._remote is None:
            return RewardResult(score=None, failure="the environment was not reset")
        self._scored = self._servers.score(self._remote, n_malformed)
        return RewardResult.model_validate(self._scored["reward"])

    def _calls(self) -> list:
        from types import SimpleNamespace
        return [SimpleNamespace(**c) for c in (self._scored or {}).get("calls", [])]

    def __del__(self):  # TRL drops instances without a last call: their episodes go with them
        try:
            if self._remote is not None:
                self._servers.release_soon(self._remote)
        except Exception:  # the cluster is gone already (interpreter shutdown); the idle timeout cleans up
            pass

    def _release(self) -> None:
        from envfactory.data.exports.episode_client import EpisodeReleased
        if self._remote is not None:
            try:
                self._servers.release(self._remote)
            except EpisodeReleased:
                pass
            self._remote, self._scored = None, None


def _class_name(env_name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", env_name) if part) + "Environment"


def environment_class(env: Any, reward_config: RewardConfig | None = None, servers: Any = None) -> type[TRLEnvironment]:
    """The TRL environment class of one environment (a bundled name, a package path or a loaded one);
    with ``servers`` (``episode_client.EpisodeServers``), its episodes live on those servers."""
    environment = env if hasattr(env, "episode") else load_env(env)
    namespace: dict[str, Any] = {"_servers": servers} if servers is not None else {}
    namespace |= {
        "__doc__": f"The {environment.name} environment ({environment.manifest.domain}): "
                   f"{_one_line(environment.manifest.description)} Tools return JSON text.",
        "_environment": environment, "_reward_config": reward_config or RewardConfig(), "_cache": BoundedCache(TASK_CACHE_SIZE)}
    for spec in environment.tool_specs:
        if spec.name in RESERVED or spec.name.startswith("_"):
            raise ValueError(f"{environment.name}: tool {spec.name!r} clashes with a name TRL reserves "
                             f"({', '.join(sorted(RESERVED))}, or a leading underscore)")
        namespace[spec.name] = _tool_method(spec)
    cls = type(_class_name(environment.name), (RemoteTRLEnvironment if servers is not None else TRLEnvironment,), namespace)
    for spec in environment.tool_specs:
        getattr(cls, spec.name).__qualname__ = f"{cls.__name__}.{spec.name}"
    return cls


def environment_factories(envs: Sequence[Any], reward_config: RewardConfig | None = None,
                          servers: Any = None) -> dict[str, type]:
    """``{env name: class}`` for ``GRPOTrainer(environment_factory=...)``; rows route by their ``environment`` column.
    ``servers``: episode servers on a Ray cluster (their name, or ``episode_client.EpisodeServers``) host the
    episodes instead of this process."""
    if isinstance(servers, str):
        from envfactory.data.exports.episode_client import EpisodeServers
        servers = EpisodeServers.connect(servers)
    classes = [environment_class(e, reward_config, servers) for e in envs]
    return {cls._environment.name: cls for cls in classes}


# ---------------------------------------------------------------- the reward

def _malformed_calls(completion: Any, tool_names: set[str]) -> int:
    """Tool calls the trainer could not execute: text left in ``<tool_call>`` blocks it could not parse,
    and parsed calls of tools the environment does not have (TRL answers those itself)."""
    if isinstance(completion, str):
        return completion.count("<tool_call>")
    bad = 0
    for message in completion or []:
        if message.get("role") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            bad += content.count("<tool_call>")
        for call in message.get("tool_calls") or []:
            if (call.get("function") or call).get("name") not in tool_names:
                bad += 1
    return bad


def make_reward_func(on_batch: Callable[[list[dict[str, Any]]], None] | None = None) -> Callable[..., list]:
    """The reward function for ``GRPOTrainer(reward_funcs=[...])``.

    TRL passes the batch's environment instances as ``environments``; each is scored by our
    composite verifier. A rollout that cannot be scored (the gold replay failed, a tool crashed)
    gets ``None``, which TRL leaves out of the loss instead of training on a 0. ``on_batch``
    receives one dict per rollout (calls, failures, reward components) for logging.
    """

    def envfactory_reward(completions=None, environments=None, **_columns) -> list[float | None]:
        if not environments:
            raise ValueError("envfactory_reward needs GRPOTrainer(environment_factory=environment_factories(...))")
        scores, stats = [], []
        for completion, env in zip(completions or [None] * len(environments), environments):
            malformed = _malformed_calls(completion, env._tool_names()) if completion is not None else 0
            result = env._score(malformed)
            calls = env._calls()
            scores.append(result.score)
            stats.append({"env": env._environment.name, "task_id": env._task_id, "calls": len(calls),
                          "failed_calls": sum(1 for c in calls if not c.ok), "malformed": malformed,
                          "tools": [c.tool for c in calls], **result.components()})
        if on_batch is not None:
            on_batch(stats)
        return scores

    return envfactory_reward


# ---------------------------------------------------------------- the export

def _wire_message(m) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:  # arguments as JSON text: the Qwen3 template emits a string verbatim
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
                             for c in m.tool_calls]
    if m.role == "tool":
        out["tool_call_id"], out["name"] = m.tool_call_id, m.name
    return out


def _calls_json(calls: list[Call]) -> str:
    return json.dumps([c.model_dump() for c in calls], ensure_ascii=False)


def to_trl(record: TrajectoryRecord) -> list[dict[str, Any]]:
    """One row per user turn: the conversation up to that turn's query is the prompt.

    The record is cut by ``turns.cut_turns``, the same checked cut the verl export uses: a record whose
    user messages do not pair one to one with its turns (a simulated user who asked back within a turn),
    whose history contradicts the gold state, or whose gold no longer replays raises NotExportable
    (a ValueError: ``envfactory export`` skips the record and reports why)."""
    _, turns = cut_turns(record)
    env = record.envs[0]
    rows = []
    for turn in turns:
        m = record.messages[turn.user_index]
        rows.append({
            "prompt": [_wire_message(x) for x in record.messages[:turn.user_index + 1]],
            "environment": "+".join(e.name for e in record.envs),
            "task_id": f"{record.key}:{turn.index}",
            "turn": turn.index,
            "query": m.content,
            "gold_calls": _calls_json(turn.calls),      # as cut_turns checked them
            "prefix_calls": _calls_json(turn.prefix),
            "initial_state_hash": env.initial_state_hash,
        })
    return rows


def check_trl(row: dict[str, Any]) -> list[str]:
    problems = []
    prompt = row.get("prompt")
    if not isinstance(prompt, list) or not prompt:
        problems.append("prompt must be a non-empty list of messages")
    else:
        if prompt[-1].get("role") != "user":
            problems.append("the prompt must end with the user's query")
        for i, m in enumerate(prompt):
            if m.get("role") not in ("system", "user", "assistant", "tool"):
                problems.append(f"prompt message {i}: unknown role {m.get('role')!r}")
            for c in m.get("tool_calls") or []:
                if not isinstance(c.get("function", {}).get("arguments"), str):
                    problems.append(f"prompt message {i}: tool-call arguments must be JSON text (Arrow typing)")
    env = row.get("environment")
    if not env or "+" in str(env):
        problems.append(f"environment {env!r}: TRL routes a row to exactly one environment")
    for column, missing in (("gold_calls", None), ("prefix_calls", "[]")):   # the defaults reset() applies
        try:
            calls = parse_calls(row.get(column, missing), column)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if any(c.env and c.env != env for c in calls):
            problems.append(f"{column}: a call names another environment than {env!r}")
    if not row.get("task_id"):
        problems.append("task_id is missing")
    return problems


FACTORY_SNIPPET = '''"""Train on {rows_file} with TRL's GRPOTrainer (written by `envfactory export --format trl`).

Each rollout gets its own instance, hence its own isolated episode; the reward is envfactory's
composite verifier. The environments travel with this folder (envs/, pinned in packages.json);
trust does not: on a new machine, review each copy and `envfactory envs trust envs/NAME` once.
Run from anywhere: python {name}.trl_train.py --model PATH_OR_ID
"""
import argparse
from pathlib import Path

from datasets import load_dataset
from trl import GRPOConfig, GRPOTrainer

from envfactory.data.exports.bundle import register_export
from envfactory.data.exports.trl_env import environment_factories, make_reward_func

HERE = Path(__file__).resolve().parent
register_export(HERE)  # the export's own copies of its environments resolve by name

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
args = parser.parse_args()
dataset = load_dataset("json", data_files=str(HERE / "{rows_file}"))["train"]
trainer = GRPOTrainer(
    model=args.model,
    reward_funcs=[make_reward_func()],
    train_dataset=dataset,
    environment_factory=environment_factories({envs!r}),
    args=GRPOConfig(output_dir="{name}-grpo", num_generations=8, max_completion_length=1024,
                    max_tool_calling_iterations=8, logging_steps=1),
)
trainer.train()
'''
