"""What we export is what trainers consume, and our environments and reward work inside a real RL loop:
TRL SFT on the openai export of the bundled catalog, then TRL GRPO stepping our environments (CPU, tiny model)."""
from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("trl")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]   # ~2 min on 2 idle cores; slower when they are shared


def test_sft_then_grpo_on_our_exports_environments_and_reward(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")        # no hub: the model and tokenizer are made here
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from envfactory.data.training.smoke import SmokeConfig, run_smoke

    lines = []
    summary = run_smoke(SmokeConfig(out=str(tmp_path)), log=lines.append)
    print("\n".join(lines))

    # SFT on the openai export: the loss falls
    losses = summary["sft"]["losses"]
    assert summary["rows"]["train"] >= 50 and losses[-1] < 0.5 * losses[0]
    # after SFT most sampled completions for held-out prompts hold a well-formed call (JSON arguments) of a real tool
    evaluation = summary["eval"]
    assert evaluation["prompts"] >= 5 and evaluation["share"]["catalog_tool"] > 0.5, evaluation
    # GRPO steps our environments (they receive tool calls) and scores every step with our reward, in [0, 1]. Whether a
    # randomly initialised model earns any reward in five steps is luck now that doing nothing earns nothing on every
    # turn; that the reward separates gold, partial and empty rollouts is asserted in tests/test_trl_env.py.
    steps = summary["grpo"]
    assert len(steps) == SmokeConfig().grpo_steps
    assert sum(s["tool_calls_per_rollout"] * s["rollouts"] for s in steps) > 0
    assert any(s["mean_reward"] is not None for s in steps), steps
    assert all(s["mean_reward"] is None or 0 <= s["mean_reward"] <= 1 for s in steps)
    assert all(len(s["group_reward_std"]) > 0 and all(std >= 0 for std in s["group_reward_std"]) for s in steps)
    assert json.loads((tmp_path / "summary.json").read_text())["seconds"]["total"] > 0
    assert os.environ["HF_HUB_OFFLINE"] == "1"
