"""The verl command of an export: one list of ``key=value`` overrides, printed in the export's README and
shipped as ``envfactory.verl.yaml`` (a hydra config on top of verl's ``ppo_trainer``), so both say the same.
``tests/test_verl_real.py`` composes verl's config from the README's command and checks the YAML against it.

Lengths come from the export: the longest prompt (the row's conversation with its own tools, rendered by
the model's chat template) and the longest gold continuation of a turn (its calls, their results and the
final reply), each with a margin, so no row is cut or left out. Without a tokenizer they are estimated
from the UTF-8 bytes of the messages and tools (a bound for byte-level BPE tokenizers) and the README says so.
``filter_overlong_prompts`` stays off: verl would measure every prompt against every tool of the tool
config, not the row's own.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

MARGIN = 1.25           # room over the longest prompt / gold continuation (rollouts make calls the gold did not)
ROUND_TO = 128
PER_MESSAGE_BYTES = 32  # template tokens around each message, in the estimate without a tokenizer


def _rounded(tokens: int) -> int:
    return max(ROUND_TO, math.ceil(tokens * MARGIN / ROUND_TO) * ROUND_TO)


def _template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as chat templates take them: argument dicts, no null keys."""
    out = []
    for m in messages:
        m = {k: v for k, v in m.items() if v is not None}
        if m.get("tool_calls"):
            m["tool_calls"] = [{**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])
                                                  if isinstance(c["function"]["arguments"], str) else c["function"]["arguments"]}}
                               for c in m["tool_calls"]]
        out.append(m)
    return out


def measure_lengths(samples: list[tuple[list[dict], list[dict], list[dict]]], tokenizer_path: str | None) -> dict[str, Any]:
    """``samples``: (prompt messages, gold continuation messages, tools) per row. Returns the longest prompt and
    continuation in tokens, the lengths to configure, and how they were measured."""
    longest_prompt = longest_response = 0
    if tokenizer_path:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(tokenizer_path)

        def count(messages, tools, generation):
            ids = tok.apply_chat_template(_template_messages(messages), tools=tools or None,
                                          add_generation_prompt=generation, tokenize=True)
            ids = ids["input_ids"] if hasattr(ids, "keys") else ids
            return len(ids)

        for prompt, continuation, tools in samples:
            p = count(prompt, tools, True)
            longest_prompt = max(longest_prompt, p)
            if continuation:
                longest_response = max(longest_response, count(prompt + continuation, tools, False) - p)
        how = f"measured with the chat template of {tokenizer_path}"
    else:
        def size(messages):
            return len(json.dumps(messages, ensure_ascii=False).encode()) + PER_MESSAGE_BYTES * len(messages)

        for prompt, continuation, tools in samples:
            longest_prompt = max(longest_prompt, size(prompt) + len(json.dumps(tools, ensure_ascii=False).encode()))
            longest_response = max(longest_response, size(continuation))
        how = "estimated from UTF-8 bytes (no tokenizer given: pass --tokenizer MODEL_DIR to measure them)"
    return {"longest_prompt": longest_prompt, "longest_response": longest_response,
            "max_prompt_length": _rounded(longest_prompt), "max_response_length": _rounded(longest_response), "how": how}


def overrides(out: Path, name: str, has_val: bool, lengths: dict[str, Any], model_path: str | None,
              train_rows: int, agent_name: str) -> list[str]:
    """The ``key=value`` overrides of ``python3 -m verl.trainer.main_ppo`` for this export."""
    o = Path(out).resolve()
    val = f"{o}/{name}.val.parquet" if has_val else f"{o}/{name}.train.parquet"
    batch = max(1, min(32, train_rows))
    return [
        "algorithm.adv_estimator=grpo",
        f"data.train_files={o}/{name}.train.parquet",
        f"data.val_files={val}",
        "data.return_raw_chat=True",
        "data.filter_overlong_prompts=False",
        f"data.max_prompt_length={lengths['max_prompt_length']}",
        f"data.max_response_length={lengths['max_response_length']}",
        f"data.train_batch_size={batch}",
        f"actor_rollout_ref.model.path={model_path or 'MODEL_PATH'}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={batch}",
        "actor_rollout_ref.rollout.name=vllm",
        "actor_rollout_ref.rollout.mode=async",
        "actor_rollout_ref.rollout.n=8",
        "actor_rollout_ref.rollout.multi_turn.enable=True",
        "actor_rollout_ref.rollout.multi_turn.format=hermes",
        f"actor_rollout_ref.rollout.multi_turn.tool_config_path={o}/{name}.tools.yaml",
        "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=10",
        "actor_rollout_ref.rollout.multi_turn.max_user_turns=10",
        "actor_rollout_ref.rollout.multi_turn.max_parallel_calls=4",
        "actor_rollout_ref.rollout.multi_turn.max_tool_response_length=512",
        f"actor_rollout_ref.rollout.agent.agent_loop_config_path={o}/agent_loop.yaml",
        f"actor_rollout_ref.rollout.agent.default_agent_loop={agent_name}",
        f"reward.custom_reward_function.path={o}/reward_fn.py",
        "reward.custom_reward_function.name=compute_score",
    ]


def _parse(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(value, value)


def shipped_config(items: list[str]) -> dict[str, Any]:
    """The overrides as a hydra primary config on top of verl's ``ppo_trainer`` (found through its package)."""
    config: dict[str, Any] = {"hydra": {"searchpath": ["pkg://verl.trainer.config"]}, "defaults": ["ppo_trainer", "_self_"]}
    for item in items:
        key, value = item.split("=", 1)
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _parse(value)
    return config


def command(items: list[str]) -> str:
    return "python3 -m verl.trainer.main_ppo \\\n" + " \\\n".join(f"  {item}" for item in items)
