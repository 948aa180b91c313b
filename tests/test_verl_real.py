"""The verl export through the real verl package: config composed from the README's command, verl's
RLHFDataset, tools YAML, agent loop registry (our loop instantiated by hydra from agent_loop.yaml, two and
more rollouts per worker), rollouts against a scripted OpenAI-compatible model on loopback, and scores from
verl's reward loop with our compute_score.

verl pins transformers below the version this project's ``train`` extra pins, so it lives in its own venv
on top of ``.venv`` (``bash .ci/verl-venv``; CI builds it and sets ENVFACTORY_REQUIRE_VERL=1). The test runs
``tests/verl_driver.py`` with that venv's Python; without it the test is skipped, unless required.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.doubles.openai_stub import OpenAIStubServer
from tests.seeds import kept_seeds
from envfactory.cli.main import main
from envfactory.graphs.querygen import QueryGenContext, make_graph

ROOT = Path(__file__).resolve().parent.parent
VERL_PYTHON = Path(os.environ.get("ENVFACTORY_VERL_PYTHON") or ROOT / ".venv-verl" / "bin" / "python")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _verl_python() -> str:
    if VERL_PYTHON.exists():
        return str(VERL_PYTHON)
    if os.environ.get("ENVFACTORY_REQUIRE_VERL"):
        pytest.fail(f"no verl venv at {VERL_PYTHON}: run `bash .ci/verl-venv` (ENVFACTORY_REQUIRE_VERL is set)")
    pytest.skip(f"no verl venv at {VERL_PYTHON} (`bash .ci/verl-venv` builds it)")


def _calls_text(calls) -> str:
    return "".join(f"<tool_call>\n{json.dumps({'name': c['name'], 'arguments': c['arguments']})}\n</tool_call>\n"
                   for c in calls)


class ScriptedPolicy:
    """Answers from the decoded prompt: on a turn's first step, every other rollout of a row makes the turn's gold
    calls and the others make none; after tool results, a short final answer."""

    def __init__(self, rows):
        self.gold = {r["prompt"][-1]["content"]: json.loads(r["reward_model"]["ground_truth"]) for r in rows}
        self.first_steps: dict[str, int] = {}

    def __call__(self, body):
        prompt = body["messages"][0]["content"]
        start = prompt.rfind("<|im_start|>user\n")
        user = prompt[start + len("<|im_start|>user\n"):].split("<|im_end|>", 1)[0]
        if "<tool_response>" in prompt[start:]:
            return {"content": "Done: the results are above."}
        seen = self.first_steps[user] = self.first_steps.get(user, 0) + 1
        if user not in self.gold or seen % 2 == 0:
            return {"content": "I will not do anything."}
        return {"content": _calls_text(self.gold[user])}


@pytest.fixture(scope="module")
def verl_export(tmp_path_factory):
    from envfactory.data.training import tiny
    base = tmp_path_factory.mktemp("verl_real")
    store = base / "records.sqlite"
    for env in ("library", "productivity"):  # both have find_member: the export qualifies it
        make_graph().invoke({"envs": [env], "seeds": kept_seeds(env, 0, 4)},
                            context=QueryGenContext(rollouts=1, store_path=str(store)))
    assert main(["export", "--format", "openai", "--store", str(store), "--out", str(base / "sft")]) == 0
    rows = [json.loads(line) for line in (base / "sft" / "envfactory.openai.jsonl").read_text().splitlines()]
    tokenizer = tiny.train_tokenizer(tiny.render_conversations(rows, training=False), vocab_size=2048)
    model = tiny.save(tiny.tiny_qwen3(tokenizer), tokenizer, base / "model")
    out = base / "verl"
    assert main(["export", "--format", "verl", "--store", str(store), "--out", str(out), "--tokenizer", str(model)]) == 0
    return out, model


def test_the_export_trains_in_real_verl(verl_export, tmp_path):
    python = _verl_python()
    out, model = verl_export
    train = pq.read_table(out / "envfactory.train.parquet").to_pylist()
    result_path = tmp_path / "result.json"
    with OpenAIStubServer(responder=ScriptedPolicy(train[:2])) as server:
        proc = subprocess.run([python, str(ROOT / "tests" / "verl_driver.py"), str(out), str(model), server.url,
                               str(result_path)], capture_output=True, text=True, timeout=1100,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "RAY_DEDUP_LOGS": "0"})
    assert proc.returncode == 0, proc.stderr[-6000:]
    result = json.loads(result_path.read_text())
    readme = (out / "README.md").read_text()
    # the README's command is what composed verl's config, and the shipped YAML says the same
    assert result["shipped_differs"] == []
    assert f"data.max_prompt_length={result['prompt_length']}" in readme
    assert f"data.max_response_length={result['response_length']}" in readme
    assert result["rows"] == len(train)                  # RLHFDataset kept every row (no overlong filter)
    # two rows, rollout.n rollouts each, all in one worker: the registry entry stayed importable throughout
    n = result["rollouts_per_row"]
    assert n >= 2 and result["batch"] == 2 * n
    assert result["registry"]["envfactory_agent"]["_target_"] == "envfactory.data.exports.verl_agent.EnvFactoryAgentLoop"
    # verl's reward loop scored every rollout with our compute_score: the gold half 1, the do-nothing half 0
    scores = result["scores"]
    assert len(scores) == 2 * n and all(s in (0.0, 1.0) for s in scores), scores
    assert sorted(scores) == [0.0] * n + [1.0] * n, scores
    assert result["extra"]["scored"] == [1.0] * (2 * n)
    assert all(t > 0 for t in result["response_mask_tokens"])
    # each rollout saw only its row's tools
    for selection, row in zip(result["tool_selection"], train[:2]):
        assert selection == list(row["extra_info"]["tool_selection"])
    assert re.search(r"python3 -m verl\.trainer\.main_ppo", readme)
