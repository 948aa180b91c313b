"""Drives a verl export through the real verl package (run in a Python that has verl; see test_verl_real.py).

    python tests/verl_driver.py EXPORT_DIR MODEL_DIR LLM_URL OUT_JSON

1. composes verl's config (``verl/trainer/config/ppo_trainer.yaml``) with hydra from the command the export's
   README prints (the ``key=value`` lines after ``verl.trainer.main_ppo``), and checks that the shipped
   ``envfactory.verl.yaml`` composes to the same values;
2. reads the train parquet with verl's ``RLHFDataset`` and collates a batch, repeated ``rollout.n`` times;
3. builds verl's ``AgentLoopWorker`` from that config: it loads the tools YAML and registers the agent loops of
   ``agent_loop.yaml``; the LLM client answers through an OpenAI-compatible server at LLM_URL (the test's
   scripted stub on loopback): the prompt ids are decoded, sent as a chat request, the reply tokenized;
4. runs ``generate_sequences``: every rollout instantiates our loop from the registry through hydra, and
   verl's ``RewardLoopWorker`` (the reward manager the config names, with our ``compute_score``) scores it;
5. writes what happened to OUT_JSON.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sys
import types
from pathlib import Path


def readme_overrides(export: Path) -> list[str]:
    text = (export / "README.md").read_text(encoding="utf-8")
    block = re.search(r"python3 -m verl\.trainer\.main_ppo(.*?)```", text, re.DOTALL)
    if block is None:
        raise SystemExit("the export's README.md has no verl.trainer.main_ppo command")
    return shlex.split(block.group(1).replace("\\\n", " "))


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir
    import verl.trainer.main_ppo as main_ppo
    config_dir = os.path.join(os.path.dirname(main_ppo.__file__), "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=overrides)


def compose_shipped(export: Path):
    """The shipped YAML, as ``main_ppo --config-path EXPORT --config-name envfactory.verl`` would compose it."""
    from hydra import compose as hydra_compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(export), version_base=None):
        return hydra_compose(config_name="envfactory.verl")


class StubClient:
    """verl's LLM client interface (``generate`` -> ``TokenOutput``) over an OpenAI-compatible chat endpoint."""

    def __init__(self, url: str, tokenizer):
        self.url, self.tokenizer, self.calls = url, tokenizer, 0

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        import httpx
        from verl.workers.rollout.replica import TokenOutput
        self.calls += 1
        prompt = self.tokenizer.decode(prompt_ids, skip_special_tokens=False)
        async with httpx.AsyncClient(timeout=60) as client:
            reply = await client.post(f"{self.url}/chat/completions", json={
                "model": "stub-model", "messages": [{"role": "user", "content": prompt}],
                "temperature": sampling_params.get("temperature", 1.0), "user": request_id})
        reply.raise_for_status()
        text = reply.json()["choices"][0]["message"]["content"] or ""
        ids = self.tokenizer.encode(text + "<|im_end|>", add_special_tokens=False)
        return TokenOutput(token_ids=ids, log_probs=[-0.5] * len(ids), stop_reason="completed")


class LocalRewardHandle:
    """Stands in for the Ray actor handle of a reward loop worker: ``compute_score.remote(data)``."""

    def __init__(self, worker):
        self.compute_score = types.SimpleNamespace(remote=worker.compute_score)


async def run(export: Path, model: Path, url: str) -> dict:
    import numpy as np
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker, _agent_loop_registry
    from verl.experimental.reward_loop import RewardLoopWorker
    from verl.protocol import DataProto
    from verl.utils import hf_tokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    overrides = readme_overrides(export)
    if not any(o.startswith("actor_rollout_ref.model.path=") for o in overrides):
        raise SystemExit("the README command sets no actor_rollout_ref.model.path")
    overrides = [o.replace("MODEL_PATH", str(model)) for o in overrides]
    config = compose(overrides)
    shipped = compose_shipped(export)
    differ = sorted(o.split("=", 1)[0] for o in overrides
                    if OmegaConf.select(shipped, o.split("=", 1)[0]) != OmegaConf.select(config, o.split("=", 1)[0])
                    and "MODEL_PATH" not in str(OmegaConf.select(shipped, o.split("=", 1)[0])))
    tokenizer = hf_tokenizer(str(config.actor_rollout_ref.model.path))
    dataset = RLHFDataset(data_files=config.data.train_files, tokenizer=tokenizer, config=config.data)
    n_rows = len(dataset)
    rows = [dataset[i] for i in range(min(2, n_rows))]
    batch = DataProto.from_single_dict(collate_fn(rows))
    n = int(config.actor_rollout_ref.rollout.n)
    batch = batch.repeat(repeat_times=n, interleave=True)
    client = StubClient(url, tokenizer)
    reward_worker = RewardLoopWorker(config)
    worker = AgentLoopWorker(config, llm_client=client, reward_loop_worker_handles=[LocalRewardHandle(reward_worker)])
    output = await worker.generate_sequences(batch)
    scores = output.batch["rm_scores"].sum(dim=-1).tolist() if "rm_scores" in output.batch.keys() else None
    extra = {k: [float(x) for x in output.non_tensor_batch[k]] for k in
             ("score", "scored", "trajectory", "state", "read_only_gold") if k in output.non_tensor_batch}
    masks = output.batch["response_mask"].sum(dim=-1).tolist()
    return {"rows": n_rows, "batch": len(batch), "rollouts_per_row": n, "llm_requests": client.calls,
            "scores": scores, "extra": extra, "response_mask_tokens": masks,
            "registry": {k: dict(v) for k, v in _agent_loop_registry.items() if k == "envfactory_agent"},
            "prompt_length": int(config.actor_rollout_ref.rollout.prompt_length),
            "response_length": int(config.actor_rollout_ref.rollout.response_length),
            "shipped_differs": differ,
            "tool_selection": [list(r["extra_info"].get("tool_selection") or []) for r in rows],
            "num_turns": np.asarray(output.non_tensor_batch.get("__num_turns__", [])).tolist()}


def main() -> None:
    export, model, url, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    result = asyncio.run(run(export, model, url))
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
