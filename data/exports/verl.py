"""verl multi-turn tool RL export: parquet rows, a tool config, the reward hook and the agent loop.

One row per user turn that has gold calls (EnvFactory's layout): the earlier turns are in the
prompt as chat messages, ``reward_model.ground_truth`` holds that turn's gold calls with their
masked arguments, and ``extra_info`` says how to rebuild the state the turn starts from (earlier
turns' gold calls replayed on the environment's initial state, with its hash to detect drift).

Arrow typing: a parquet column has one type for every row, and struct fields are the union over
rows (missing ones read back as null). Payloads whose shape varies from row to row are therefore
JSON strings: ``reward_model.ground_truth`` (the calls and their arguments), ``extra_info.prefix_calls``,
``extra_info.tools`` (the row's tool schemas), tool-call ``arguments`` inside ``prompt`` (the OpenAI
wire form, which chat templates print verbatim) and ``tools_kwargs.envfactory.create_kwargs.task``.
For the same reason ``tools_kwargs`` has one key on every row (``envfactory``): a key per tool would
become a struct field on every row, null on the rows of other environments.

Tools are scoped per row: ``extra_info.tools`` and ``extra_info.tool_selection`` (which verl's stock
loop reads too) list the row's own environments' tools only. A tool name that several exported
environments share is qualified as ``env__tool`` everywhere a row or the tool config shows it (schemas,
earlier calls in the prompt, gold calls); ``verl_task.internal_calls`` maps gold calls back.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import yaml

from envfactory.data.records import TrajectoryRecord
from envfactory.data.reward import Call
from envfactory.envs.runtime.errors import EnvironmentPackageError, UntrustedCodeError

from envfactory.data.exports.bundle import PACKAGES_FILE, bundle_environments
from envfactory.data.exports.card import CardStats, write_card
from envfactory.data.exports.provenance import row_metadata
from envfactory.data.exports.turns import NotExportable, cut_turns
from envfactory.data.exports.verl_command import MARGIN, command, measure_lengths, overrides, shipped_config
from envfactory.data.exports.verl_loop import AGENT_NAME
from envfactory.data.exports.verl_task import (TASK_KWARGS_KEY, EnvPin, VerlTask, colliding_tools, exported_name,
                                               load_env, route)

ABILITY = "tool_use"
CONTINUATION = "_gold_continuation"   # a row's gold reply messages, kept out of the parquet
AGENT_LOOP_TARGET = "envfactory.data.exports.verl_agent.EnvFactoryAgentLoop"   # module-level: hydra imports it
TOOL_CLASS = "envfactory.data.exports.verl_agent.EpisodeTool"


def _schema(env: str, spec, qualified: frozenset[str]) -> dict[str, Any]:
    schema = spec.openai_schema()
    name = exported_name(env, spec.name, qualified)
    return schema if name == spec.name else {**schema, "function": {**schema["function"], "name": name}}


def to_verl(record: TrajectoryRecord, qualified: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The record's rows (without ``index`` and split: the writer numbers them): one per turn with gold
    calls, cut and checked by ``turns.cut_turns`` (NotExportable says why a record cannot be). ``qualified``:
    tool names several exported environments share, shown as ``env__tool`` (``write_verl`` finds them)."""
    envs, turns = cut_turns(record)
    tools = [_schema(name, spec, qualified) for name, env in envs.items() for spec in env.tool_specs]
    prompt = [_shown_message(m.openai(), envs, qualified) for m in record.messages]
    ends = [t.user_index for t in turns[1:]] + [len(prompt)]
    rows = []
    for turn in turns:
        if not turn.calls:
            continue
        pins = [EnvPin(name=ref.name, version=ref.version, initial_state_hash=ref.initial_state_hash,
                       turn_state_hash=turn.start_hashes[ref.name], gold_final_hash=turn.gold_hashes[ref.name])
                for ref in record.envs]
        task = VerlTask(record_key=record.key, turn=turn.index, envs=pins, prefix_calls=turn.prefix)
        gold = [c.model_copy(update={"name": exported_name(c.env, c.name, qualified)}) if c.env else c for c in turn.calls]
        row = _row(record, task, prompt[: turn.user_index + 1], gold, tools)
        row[CONTINUATION] = prompt[turn.user_index + 1: ends[turns.index(turn)]]  # for the lengths; not written
        rows.append(row)
    return rows


def _shown_message(message: dict[str, Any], envs: dict, qualified: frozenset[str]) -> dict[str, Any]:
    """A prompt message with the tool names the row shows (shared names qualified with their environment)."""
    def shown(name: str | None) -> str | None:
        owner = route(envs, name) if name else None
        return exported_name(owner[0], owner[1], qualified) if owner else name

    if message.get("tool_calls"):
        message["tool_calls"] = [{**c, "function": {**c["function"], "name": shown(c["function"]["name"])}}
                                 for c in message["tool_calls"]]
    if message.get("role") == "tool" and message.get("name"):
        message["name"] = shown(message["name"])
    return message


def _row(record: TrajectoryRecord, task: VerlTask, prompt: list[dict[str, Any]], calls: list[Call],
         tools: list[dict[str, Any]]) -> dict[str, Any]:
    task_json = task.model_dump_json()
    meta = row_metadata(record)
    return {
        "data_source": "envfactory/" + "+".join(task.env_names),
        "agent_name": AGENT_NAME,
        "prompt": prompt,
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": json.dumps([c.model_dump() for c in calls], ensure_ascii=False)},
        "extra_info": {
            "record_key": task.record_key, "turn": task.turn,
            "chain_id": record.provenance.chain_id or record.key,
            "envs": [p.model_dump() for p in task.envs],
            "prefix_calls": json.dumps([c.model_dump() for c in task.prefix_calls], ensure_ascii=False),
            "tools": json.dumps(tools, ensure_ascii=False),
            "tool_selection": [t["function"]["name"] for t in tools],   # verl's stock loop shows only these
            "need_tools_kwargs": True,
            "tools_kwargs": {TASK_KWARGS_KEY: {"create_kwargs": {"task": task_json}}},
            "difficulty": record.verification.difficulty or "",
            # tiers, models, prompt versions: JSON text (one Arrow type), ``offline`` to filter scripted rows
            "provenance": json.dumps(meta, ensure_ascii=False),
            "offline": meta["offline"],
        },
    }


# ---------------------------------------------------------------- checker

def _loads(value: Any, what: str, problems: list[str]) -> Any:
    if not isinstance(value, str):
        problems.append(f"{what} must be a JSON string (Arrow cannot type it per row otherwise)")
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        problems.append(f"{what} is not valid JSON")
        return None


def check_verl(row: dict[str, Any]) -> list[str]:
    """The rules stock verl (RLHFDataset, the reward managers, agent loops) and our loop rely on."""
    problems: list[str] = []
    for key, kind in (("data_source", str), ("agent_name", str), ("ability", str), ("prompt", list),
                      ("reward_model", dict), ("extra_info", dict)):
        if not isinstance(row.get(key), kind):
            problems.append(f"{key} must be a {kind.__name__}")
    if problems:
        return problems
    if row["agent_name"] != AGENT_NAME:
        problems.append(f"agent_name is {row['agent_name']!r}: rows must pick the loop that owns the episodes ({AGENT_NAME!r})")
    info = row["extra_info"]
    tools = _loads(info.get("tools"), "extra_info.tools", problems) or []
    names = {t.get("function", {}).get("name") for t in tools if isinstance(t, dict)}
    # prompt: chat messages in a valid order, ending with the user turn the row trains
    prompt = row["prompt"]
    pending: set[str] = set()
    for i, m in enumerate(prompt):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("system", "user", "assistant", "tool"):
            problems.append(f"prompt[{i}]: unknown role {role!r}")
            continue
        if not isinstance(m.get("content"), str):
            problems.append(f"prompt[{i}]: content must be a string")
        if role == "system" and i != 0:
            problems.append(f"prompt[{i}]: a system message must come first")
        if role == "tool":
            if m.get("tool_call_id") not in pending:
                problems.append(f"prompt[{i}]: tool result for unknown call {m.get('tool_call_id')!r}")
            pending.discard(m.get("tool_call_id"))
            continue
        if pending:
            problems.append(f"prompt[{i}]: {role} message while calls {sorted(pending)} have no result")
            pending.clear()
        for c in m.get("tool_calls") or []:
            fn = c.get("function") or {}
            if fn.get("name") not in names:
                problems.append(f"prompt[{i}]: call of {fn.get('name')!r}, which is not among the row's tools")
            if not isinstance(_loads(fn.get("arguments"), f"prompt[{i}] call arguments", problems), (dict, type(None))):
                problems.append(f"prompt[{i}]: call arguments must encode a JSON object")
            pending.add(c.get("id"))
    first = next((m for m in prompt if isinstance(m, dict) and m.get("role") != "system"), None)
    if first is None or first.get("role") != "user":
        problems.append("the first non-system message must be the user's")
    if not prompt or not isinstance(prompt[-1], dict) or prompt[-1].get("role") != "user":
        problems.append("the prompt must end with the user turn the row trains")
    # reward_model: rule style, ground truth = that turn's gold calls with masks
    rm = row["reward_model"]
    if rm.get("style") != "rule":
        problems.append("reward_model.style must be 'rule'")
    gold = _loads(rm.get("ground_truth"), "reward_model.ground_truth", problems)
    if gold is not None:
        if not isinstance(gold, list) or not gold:
            problems.append("reward_model.ground_truth must hold a non-empty list of calls")
        else:
            for k, c in enumerate(gold):
                if not isinstance(c, dict) or not isinstance(c.get("arguments"), dict):
                    problems.append(f"ground_truth[{k}] needs a name and arguments as an object")
                    continue
                if c.get("name") not in names:
                    problems.append(f"ground_truth[{k}] calls {c.get('name')!r}, which is not among the row's tools")
                if not set(c.get("masked") or []) <= set(c["arguments"]):
                    problems.append(f"ground_truth[{k}] masks arguments it does not have")
    # extra_info: what RLHFDataset lifts, and what our loop and reward need
    if not isinstance(info.get("index"), int):
        problems.append("extra_info.index must be an integer")
    if info.get("need_tools_kwargs") is not True:
        problems.append("extra_info.need_tools_kwargs must be true")
    kwargs = info.get("tools_kwargs") or {}
    entry = kwargs.get(TASK_KWARGS_KEY) if isinstance(kwargs, dict) else None
    if not isinstance(entry, dict) or not isinstance((entry.get("create_kwargs") or {}).get("task"), str):
        problems.append(f"extra_info.tools_kwargs lacks {TASK_KWARGS_KEY}.create_kwargs.task")
    if isinstance(kwargs, dict) and set(kwargs) - {TASK_KWARGS_KEY}:
        problems.append(f"extra_info.tools_kwargs must hold only {TASK_KWARGS_KEY!r} (any other key becomes a null "
                        "struct field on every other row)")
    if list(info.get("tool_selection") or []) != [t.get("function", {}).get("name") for t in tools if isinstance(t, dict)]:
        problems.append("extra_info.tool_selection must list the row's tools (extra_info.tools), in order")
    try:
        task = VerlTask.from_extra_info(info)
        if not task.envs:
            problems.append("extra_info.envs is empty")
    except ValueError as exc:
        problems.append(str(exc))
    return problems


# ---------------------------------------------------------------- files

def split_of(chain_id: str, val_fraction: float) -> str:
    """Deterministic by chain: every row of one chain lands in the same split, on every machine."""
    unit = int(hashlib.sha256(chain_id.encode()).hexdigest()[:8], 16) / 2 ** 32
    return "val" if unit < val_fraction else "train"


def check_tool_schema(schema: dict[str, Any]) -> list[str]:
    """What verl's ``OpenAIFunctionToolSchema`` accepts: loading the tool config fails on anything else."""
    fn = schema.get("function") or {}
    problems = []
    if schema.get("type") != "function" or not isinstance(fn.get("name"), str):
        problems.append("a tool schema needs type 'function' and a function name")
    if not isinstance(fn.get("description"), str):
        problems.append(f"{fn.get('name')}: description must be a string")
    params = fn.get("parameters") or {}
    if not isinstance(params.get("type"), str) or not isinstance(params.get("required"), list):
        problems.append(f"{fn.get('name')}: parameters need a type and a 'required' list")
    for key, prop in (params.get("properties") or {}).items():
        if not isinstance(prop.get("type"), str):
            problems.append(f"{fn.get('name')}.{key}: verl needs one string 'type' (got {prop.get('type')!r})")
        if "enum" in prop and not all(isinstance(v, str) for v in prop["enum"]):
            problems.append(f"{fn.get('name')}.{key}: verl only takes string enums")
    return problems


def tool_config(env_names: Iterable[str], qualified: frozenset[str] = frozenset(),
                export_dir: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """verl's tool config: the tools of the exported environments (one per name: shared names qualified),
    native type, our EpisodeTool class.

    Tools whose schema verl would refuse are left out (and reported): our agent loop shows the
    environment's full schemas itself, the YAML only serves verl's own loaders. ``export_dir``: where
    the tool finds the export's environment copies (``bundle.register_export``)."""
    tools, problems = [], []
    where = {"export_dir": str(export_dir.resolve())} if export_dir is not None else {}
    for name in sorted(set(env_names)):
        for spec in load_env(name).tool_specs:
            schema = _schema(name, spec, qualified)
            found = check_tool_schema(schema)
            if found:
                problems += [f"{name}: {p}" for p in found]
                continue
            tools.append({"class_name": TOOL_CLASS,
                          "config": {"type": "native", "env": name, **where}, "tool_schema": schema})
    return {"tools": tools}, problems


REWARD_SHIM = '''"""verl custom reward function: envfactory's composite reward (see envfactory/data/exports/verl_reward.py).

The environments the rows use resolve from this folder (envs/, pinned in packages.json)."""
from pathlib import Path

from envfactory.data.exports.bundle import register_export
from envfactory.data.exports.verl_reward import compute_score  # noqa: F401

register_export(Path(__file__).resolve().parent)
'''


def readme_text(name: str, out: Path, items: list[str], lengths: dict[str, Any]) -> str:
    model_note = ("Set `actor_rollout_ref.model.path` (`MODEL_PATH` below) to your model's folder; the lengths were "
                  if any(i.endswith("=MODEL_PATH") for i in items) else "The lengths were ")
    return f"""# verl export ({name})

Rows: one per user turn with gold calls (`{name}.train.parquet`, `{name}.val.parquet`, split by chain), each
with its own environments' tools only. envfactory (this project, with the exported environments) must be
installed where verl runs: the agent loop and the reward rebuild each turn's state from it. verl's agent loop
also needs `fastapi` and `uvicorn` (not in verl's core requirements).
The environments the rows use travel with this folder: `envs/` holds a copy of each one that is
not bundled with envfactory (synthesized, imported) and `{PACKAGES_FILE}` pins every one by content digest;
the reward function, the agent loop and the tool find them here (no workspace or ENVFACTORY_CATALOG_PATH
needed), and refuse a copy edited after the export. Trust does not travel: on the training machine, review
each copy and run `envfactory envs trust {Path(out).resolve()}/envs/NAME` once. Moved the folder? Fix the paths
below (and the `export_dir` of the tool config, used only by verl's stock tool loop).

```bash
{command(items)}
```

The same settings are in `envfactory.verl.yaml` (`python3 -m verl.trainer.main_ppo --config-path {Path(out).resolve()}
--config-name {name}.verl`). {model_note}{lengths["how"]}: the longest prompt is {lengths["longest_prompt"]}
tokens and the longest gold continuation of a turn {lengths["longest_response"]}, so `data.max_prompt_length` and
`data.max_response_length` are set {int((MARGIN - 1) * 100)}% above them (rounded up). `data.filter_overlong_prompts`
stays off: verl would measure each prompt with every tool of the tool config, not the row's own. Batch sizes and
the rollout engine (`rollout.name`) are starting points for your hardware.

- The rows name the agent loop `{AGENT_NAME}` (`agent_loop.yaml` registers it): each rollout, each of
  the n samples of a prompt included, gets its own isolated episode at the turn's starting state.
  verl's stock `tool_agent` loop creates a tool instance per call; if you keep it anyway, the tool
  config's `EpisodeTool` keys one episode on the request id instead (rows set `extra_info.tool_selection`).
- `compute_score` replays the turn's gold calls and the rollout's calls on the rebuilt state and
  returns `score` plus every component (`trajectory`, `state`, `length_penalty`, `format_penalty`,
  `matched_calls`, `predicted_calls`, `gold_calls`, `state_equal`, `read_only_gold`, `scored`, `failure_code`).
  Optional `reward.custom_reward_function.reward_kwargs`: `tau`, `length_slack`, `failure_score`.
- A sample whose environment drifted or crashed has no score: `scored=0`, its response mask is zeroed
  by the agent loop (it trains nothing) and `score` is only a placeholder (`failure_score`, default 0).
- JSON strings (Arrow needs one type per column): `reward_model.ground_truth`, `extra_info.prefix_calls`,
  `extra_info.tools`, tool-call `arguments` in `prompt`, `tools_kwargs.envfactory.create_kwargs.task`.
- A tool name that several exported environments share is shown as `env__tool` (schemas, the prompt's
  calls, gold calls, tool config).
"""


def _shared_tool_names(records: list[TrajectoryRecord]) -> frozenset[str]:
    """Tool names that more than one of the records' environments has (those that still load)."""
    envs = {}
    for ref_name in sorted({ref.name for r in records for ref in r.envs}):
        try:
            envs[ref_name] = load_env(ref_name)
        except (EnvironmentPackageError, UntrustedCodeError):
            continue  # its records are skipped with the reason below
    return colliding_tools(envs)


def write_verl(records: Iterable[TrajectoryRecord], out: str | Path, name: str = "envfactory",
               val_fraction: float = 0.1, tokenizer: str | None = None,
               filters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parquet splits, tool config, agent-loop config, reward shim, and the verl command (README.md and
    envfactory.verl.yaml) with lengths measured on the rows (``tokenizer``: a model folder whose chat template
    measures them; it also becomes the command's model path). README.md ends with the dataset card
    (``card.py``; ``filters``: how the records were chosen)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
    skipped: list[dict[str, Any]] = []
    records = sorted(records, key=lambda r: r.key)
    chains = sorted({r.provenance.chain_id or r.key for r in records})
    in_val = {c for c in chains if split_of(c, val_fraction) == "val"}
    if val_fraction > 0 and not in_val and len(chains) >= 2:  # keep a validation set even for tiny exports
        in_val = {min(chains, key=lambda c: hashlib.sha256(c.encode()).hexdigest())}
    env_names: set[str] = set()
    qualified = _shared_tool_names(records)
    samples: list[tuple[list, list, list]] = []
    index = 0
    stats = CardStats()
    for record in records:
        try:
            rows = to_verl(record, qualified)
        except (NotExportable, EnvironmentPackageError, UntrustedCodeError) as exc:
            # an environment that no longer loads costs its records, never the export
            skipped.append({"key": record.key, "problems": [str(exc)]})
            continue
        split = "val" if (record.provenance.chain_id or record.key) in in_val else "train"
        written = index
        for row in rows:
            continuation = row.pop(CONTINUATION, [])
            row["extra_info"]["index"] = index
            row["extra_info"]["split"] = split
            problems = check_verl(row)
            if problems:
                skipped.append({"key": record.key, "turn": row["extra_info"]["turn"], "problems": problems[:3]})
                continue
            index += 1
            splits[split].append(row)
            samples.append((row["prompt"], continuation, json.loads(row["extra_info"]["tools"])))
            env_names.update(p["name"] for p in row["extra_info"]["envs"])
        if index > written:
            stats.add(record)
    files = {}
    for split, rows in splits.items():
        if rows:
            path = out / f"{name}.{split}.parquet"
            pq.write_table(pa.Table.from_pylist(rows), path)
            files[split] = str(path)
    tools_path = out / f"{name}.tools.yaml"
    packages = bundle_environments(env_names, out)   # the folder alone rebuilds every row's episodes
    config, schema_problems = tool_config(env_names, qualified, out)
    tools_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    (out / "agent_loop.yaml").write_text(yaml.safe_dump([{"name": AGENT_NAME, "_target_": AGENT_LOOP_TARGET}], sort_keys=False))
    (out / "reward_fn.py").write_text(REWARD_SHIM)
    lengths = measure_lengths(samples, tokenizer)
    items = overrides(out, name, bool(splits["val"]), lengths, tokenizer, len(splits["train"]), AGENT_NAME)
    (out / f"{name}.verl.yaml").write_text(yaml.safe_dump(shipped_config(items), sort_keys=False))
    write_card(out, stats.section(file=f"{name}.{{train,val}}.parquet", fmt="verl", rows=index,
                                  skipped=len({s["key"] for s in skipped}), filters=filters,
                                  environments={n: p["origin"] for n, p in packages.items()}),
               head=readme_text(name, out, items, lengths))   # how to train, then the dataset card
    return {"format": "verl", "files": files, "rows": {s: len(r) for s, r in splits.items()}, "lengths": lengths,
            "verl_config": str(out / f"{name}.verl.yaml"),
            "tool_config": str(tools_path), "tool_config_problems": schema_problems, "agent_loop_config": str(out / "agent_loop.yaml"),
            "reward_function": str(out / "reward_fn.py"), "readme": str(out / "README.md"), "skipped": skipped,
            "environments": {n: p["origin"] for n, p in packages.items()}}
