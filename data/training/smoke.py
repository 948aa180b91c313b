"""Prove the data trains: SFT then GRPO with TRL on our exports, environments and reward.

1. records: QueryGen over bundled environments (offline tier unless models are configured) into a
   resumable record store;
2. exports: ``openai`` rows (held-out records kept apart) and ``trl`` rows, written by the same
   ``export_jsonl`` as ``envfactory export`` (records that cannot be exported are logged and skipped)
   and read back from JSONL the way a trainer user would (``datasets.load_dataset("json")``);
3. model: a tiny randomly initialised Qwen3 with a tokenizer trained here on that text, or a real
   base model given by path;
4. SFT with TRL's ``SFTTrainer`` (assistant-only loss), then sampled completions for held-out
   prompts are parsed with TRL's response parser: how many call a real tool;
5. GRPO with TRL's ``GRPOTrainer``: one isolated episode per rollout through our environment
   classes, rewards from our composite verifier; per step: tool calls per rollout, tool failure
   rate, mean reward and the spread of rewards inside each group.
"""
from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

DEFAULT_ENVS = ["library", "commerce", "finance", "health", "devtools"]


@dataclass
class SmokeConfig:
    out: str = "out/train-smoke"
    envs: list[str] = field(default_factory=lambda: list(DEFAULT_ENVS))
    tasks_per_env: int = 16
    seed: int = 0
    held_out: float = 0.15             # share of records never trained on (by a hash of their key)
    model: str | None = None           # a real base model (local path); None builds the tiny one
    device: str = "cpu"                # cpu | cuda | auto
    vocab_size: int = 8192
    hidden_size: int = 128
    layers: int = 2
    sft_steps: int = 240
    sft_batch: int = 4
    sft_lr: float = 5e-3
    max_length: int = 160              # SFT sequence cap (keeps the start: prompt and first calls)
    eval_samples: int = 4              # sampled completions per held-out prompt
    grpo_steps: int = 5
    grpo_prompts_per_step: int = 3
    num_generations: int = 4
    grpo_lr: float = 1e-3
    max_completion_length: int = 160
    max_tool_iterations: int = 2
    temperature: float = 0.7          # sampling, for the held-out check and the GRPO rollouts
    # A curriculum for a model that cannot write correctly yet: on a task that must write, the clipped reward
    # is 0 for every rollout that does not reproduce the write, so a group has no spread to learn from.
    grpo_read_only_tasks: bool = True


def _offline_env() -> None:
    # Nothing in the smoke test may reach a hub: models and data are made or given locally.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _held_out(key: str, share: float) -> bool:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


# ---------------------------------------------------------------- stages

def generate_records(cfg: SmokeConfig, log: Callable[[str], None]) -> Path:
    from envfactory.graphs.querygen import QueryGenContext, make_graph
    path = Path(cfg.out) / "records.sqlite"
    graph = make_graph()
    ctx = QueryGenContext(rollouts=1, store_path=str(path))
    for name in cfg.envs:  # one environment per run, as `envfactory run` does
        summary = graph.invoke({"envs": [name], "n": cfg.tasks_per_env, "seed": cfg.seed}, context=ctx,
                               config={"max_concurrency": 8})["summary"]
        log(f"records  {name:<14} accepted {summary['accepted']:>3}  resumed {summary['skipped_as_done']:>3}")
    return path


def write_exports(store_path: Path, cfg: SmokeConfig,
                  log: Callable[[str], None] = print) -> tuple[dict[str, Path], dict[str, list[dict[str, Any]]]]:
    """openai rows (train / held-out records) and trl rows (train records), written by ``export_jsonl``, as
    ``envfactory export`` writes them: each row checked by its format's checker, and each record that cannot
    be exported skipped and logged with its key and reason. Returns the three row files and the skipped records."""
    from envfactory.data.exports import export_jsonl
    from envfactory.data.store import RecordStore
    out = Path(cfg.out) / "export"
    store = RecordStore(store_path)
    try:
        records = [r for r in store.query(status="accepted") if len(r.envs) == 1 and r.envs[0].name in cfg.envs]
    finally:
        store.close()
    train = [r for r in records if not _held_out(r.key, cfg.held_out)]
    held_out = [r for r in records if _held_out(r.key, cfg.held_out)]
    summaries = {"train": export_jsonl(train, "openai", out, "train"),
                 "held_out": export_jsonl(held_out, "openai", out, "held_out"),
                 "trl": export_jsonl(train, "trl", out, "train")}   # also writes train.trl_train.py (not run here)
    skipped = {split: summary["skipped"] for split, summary in summaries.items()}
    for split, entries in skipped.items():
        for entry in entries:
            log(f"exports  skipped record {entry['key']} ({split} rows): {'; '.join(entry['problems'])}")
    return {split: Path(summary["file"]) for split, summary in summaries.items()}, skipped


def build_model(cfg: SmokeConfig, paths: dict[str, Path], factories: dict[str, type]):
    """The tiny model and a tokenizer trained on our text, or the real model at ``cfg.model``."""
    from trl.chat_template_utils import add_response_schema

    from envfactory.data.training.tiny import render_conversations, tiny_qwen3, train_tokenizer
    if cfg.model:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(cfg.model, local_files_only=True, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(cfg.model, local_files_only=True, dtype="auto")
    else:
        rows = [json.loads(line) for p in (paths["train"],) for line in p.read_text(encoding="utf-8").splitlines()]
        texts = render_conversations(rows)
        # the GRPO prompts show the tools as TRL reads them from our environment classes: train on those too
        texts += render_conversations(_grpo_prompt_rows(paths["trl"], factories), training=False)
        tokenizer = train_tokenizer(texts, cfg.vocab_size)
        model = tiny_qwen3(tokenizer, hidden_size=cfg.hidden_size, layers=cfg.layers, seed=cfg.seed)
    try:
        add_response_schema(tokenizer)   # how TRL parses <tool_call> blocks for this chat template
    except ValueError as exc:
        if getattr(tokenizer, "response_template", None) is None and getattr(tokenizer, "response_schema", None) is None:
            raise ValueError(f"the model's chat template is not one TRL can parse tool calls from: {exc}") from None
    return model, tokenizer


def _grpo_prompt_rows(trl_path: Path, factories: dict[str, type]) -> list[dict[str, Any]]:
    from transformers.utils import get_json_schema
    schemas = {name: [get_json_schema(getattr(cls, tool)) for tool in sorted(cls._tool_names())]
               for name, cls in factories.items()}
    rows = [json.loads(line) for line in trl_path.read_text(encoding="utf-8").splitlines()]
    return [{"prompt": r["prompt"], "tools": schemas[r["environment"]]} for r in rows if r["environment"] in schemas]


def _train_args(cfg: SmokeConfig) -> dict[str, Any]:
    use_cpu = cfg.device == "cpu"
    if cfg.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    bf16 = False
    if not use_cpu:
        import torch
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return dict(use_cpu=use_cpu, bf16=bf16, fp16=False, gradient_checkpointing=False, report_to=[], save_strategy="no",
                logging_steps=1, disable_tqdm=True, seed=cfg.seed, dataloader_num_workers=0)


def run_sft(cfg: SmokeConfig, model, tokenizer, train_path: Path):
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer
    dataset = load_dataset("json", data_files=str(train_path), split="train")   # as a trainer user reads the export
    args = SFTConfig(output_dir=str(Path(cfg.out) / "sft"), max_steps=cfg.sft_steps, per_device_train_batch_size=cfg.sft_batch,
                     learning_rate=cfg.sft_lr, lr_scheduler_type="cosine", warmup_steps=max(1, cfg.sft_steps // 10),
                     assistant_only_loss=True, max_length=cfg.max_length, **_train_args(cfg))
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return trainer.model, losses


def evaluate_tool_calls(cfg: SmokeConfig, model, tokenizer, held_out_path: Path,
                        catalog_tools: set[str] = frozenset()) -> dict[str, Any]:
    """Sample completions for held-out first user turns and parse them with TRL's response parser:
    how many hold a well-formed tool call (JSON arguments), of a tool that exists in the catalog,
    and of a tool of the prompt's own environment."""
    import torch
    from trl.chat_template_utils import parse_response
    rows = [json.loads(line) for line in held_out_path.read_text(encoding="utf-8").splitlines()]
    model.eval()
    results = []
    torch.manual_seed(cfg.seed)
    for row in rows:
        first_user = next(i for i, m in enumerate(row["messages"]) if m["role"] == "user")
        prompt = row["messages"][:first_user + 1]
        own = {t["function"]["name"] for t in row["tools"]}
        inputs = tokenizer.apply_chat_template(prompt, tools=row["tools"], add_generation_prompt=True,
                                               return_dict=True, return_tensors="pt").to(model.device)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=64, do_sample=True, temperature=cfg.temperature,
                                 num_return_sequences=cfg.eval_samples, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
        prefix = inputs["input_ids"][0].tolist()
        for seq in out:
            ids = [t for t in seq[len(prefix):].tolist() if t != tokenizer.pad_token_id]
            calls = [c.get("function") or {} for c in parse_response(tokenizer, ids, prefix=prefix).get("tool_calls") or []]
            names = [c.get("name") for c in calls]
            well_formed = bool(calls) and all(isinstance(c.get("arguments"), dict) for c in calls)
            results.append({"well_formed": well_formed,
                            "catalog_tool": well_formed and all(n in (catalog_tools | own) for n in names),
                            "own_tool": well_formed and all(n in own for n in names), "calls": names,
                            "text": tokenizer.decode(ids, skip_special_tokens=False)[:200]})
    model.train()
    n = len(results)
    counts = {k: sum(r[k] for r in results) for k in ("well_formed", "catalog_tool", "own_tool")}
    return {"prompts": len(rows), "completions": n, **counts,
            "share": {k: v / n if n else 0.0 for k, v in counts.items()}, "examples": results[:6]}


def _reads_only(row: dict[str, Any], cls: type) -> bool:
    tools = cls._environment.tools
    return all(call["name"] in tools and tools[call["name"]].read_only for call in json.loads(row["gold_calls"]))


def run_grpo(cfg: SmokeConfig, model, tokenizer, trl_path: Path, factories: dict[str, type],
             log: Callable[[str], None]) -> list[dict[str, Any]]:
    from datasets import load_dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from envfactory.data.exports.trl_env import make_reward_func
    dataset = load_dataset("json", data_files=str(trl_path), split="train")
    keep = [i for i, row in enumerate(dataset) if row["environment"] in factories
            and (not cfg.grpo_read_only_tasks or _reads_only(row, factories[row["environment"]]))]
    if not keep:
        raise ValueError("no trl rows to run GRPO on; generate more records (--tasks-per-env)")
    dataset = dataset.select(keep).shuffle(seed=cfg.seed)
    batches: list[list[dict[str, Any]]] = []
    steps: list[dict[str, Any]] = []

    class StepLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "reward" not in logs or not batches:
                return
            rollouts = batches[-1]
            groups: dict[str, list[float]] = {}
            for r in rollouts:
                if r["score"] is not None:
                    groups.setdefault(r["task_id"], []).append(r["score"])
            calls = sum(r["calls"] for r in rollouts)
            row = {"step": state.global_step, "rollouts": len(rollouts),
                   "tool_calls_per_rollout": calls / len(rollouts),
                   "env_failure_rate": sum(r["failed_calls"] for r in rollouts) / calls if calls else 0.0,
                   "malformed_per_rollout": sum(r["malformed"] for r in rollouts) / len(rollouts),
                   "mean_reward": statistics.fmean(s for g in groups.values() for s in g) if groups else None,
                   "group_reward_std": [round(statistics.pstdev(g), 4) for g in groups.values()],
                   "unscored": sum(r["score"] is None for r in rollouts),
                   "trl_tool_call_frequency": logs.get("tools/call_frequency"),
                   "trl_tool_failure_frequency": logs.get("tools/failure_frequency"),
                   "tools_called": sorted({t for r in rollouts for t in r["tools"]})}
            steps.append(row)
            mean = "-" if row["mean_reward"] is None else f"{row['mean_reward']:.3f}"
            trl_calls, trl_failed = row["trl_tool_call_frequency"], row["trl_tool_failure_frequency"]
            log(f"grpo step {row['step']}: tool calls/rollout {trl_calls or 0:.2f} parsed by TRL (failure rate "
                f"{trl_failed or 0:.2f}: unknown tool or bad arguments), {row['tool_calls_per_rollout']:.2f} reached the "
                f"environment (failure rate {row['env_failure_rate']:.2f}); malformed/rollout {row['malformed_per_rollout']:.2f}; "
                f"mean reward {mean}; reward std per group {row['group_reward_std']}")

    per_step = cfg.grpo_prompts_per_step * cfg.num_generations
    args = GRPOConfig(output_dir=str(Path(cfg.out) / "grpo"), max_steps=cfg.grpo_steps, per_device_train_batch_size=per_step,
                      num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
                      max_tool_calling_iterations=cfg.max_tool_iterations, temperature=cfg.temperature,
                      learning_rate=cfg.grpo_lr, beta=0.0, **_train_args(cfg))
    trainer = GRPOTrainer(model=model, reward_funcs=[make_reward_func(batches.append)], args=args,
                          train_dataset=dataset, processing_class=tokenizer, environment_factory=factories,
                          callbacks=[StepLog()])
    trainer.train()
    return steps


# ---------------------------------------------------------------- the whole run

def run_smoke(cfg: SmokeConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    _offline_env()
    from envfactory.data.exports.trl_env import environment_factories
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def mark(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 1)
        return now

    t = time.perf_counter()
    store = generate_records(cfg, log)
    paths, skipped = write_exports(store, cfg, log)
    counts = {k: sum(1 for _ in p.open(encoding="utf-8")) for k, p in paths.items()}
    log(f"exports  {counts['train']} train and {counts['held_out']} held-out openai rows, {counts['trl']} trl rows")
    if not counts["train"] or not counts["held_out"] or not counts["trl"]:
        raise ValueError(f"not enough records to train and hold out ({counts}); raise --tasks-per-env")
    t = mark("records_and_exports", t)

    factories = environment_factories(cfg.envs)
    model, tokenizer = build_model(cfg, paths, factories)
    log(f"model    {'tiny Qwen3 (random init)' if not cfg.model else cfg.model}: "
        f"{sum(p.numel() for p in model.parameters()):,} parameters, vocabulary {len(tokenizer)}")
    t = mark("model_and_tokenizer", t)

    model, losses = run_sft(cfg, model, tokenizer, paths["train"])
    log(f"sft      {cfg.sft_steps} steps: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    t = mark("sft", t)

    catalog = {name for cls in factories.values() for name in cls._tool_names()}
    evaluation = evaluate_tool_calls(cfg, model, tokenizer, paths["held_out"], catalog)
    log(f"eval     of {evaluation['completions']} sampled completions for {evaluation['prompts']} held-out prompts: "
        f"{evaluation['well_formed']} hold a well-formed tool call, {evaluation['catalog_tool']} of a real tool, "
        f"{evaluation['own_tool']} of a tool of the prompt's environment")
    t = mark("eval", t)

    steps = run_grpo(cfg, model, tokenizer, paths["trl"], factories, log)
    t = mark("grpo", t)
    timings["total"] = round(time.perf_counter() - started, 1)

    stds = [s for step in steps for s in step["group_reward_std"]]
    rewards = [step["mean_reward"] for step in steps if step["mean_reward"] is not None]
    summary = {
        "config": asdict(cfg), "exports": {k: str(p) for k, p in paths.items()}, "rows": counts,
        "skipped": skipped, "seconds": timings,
        "sft": {"losses": losses, "first": losses[0], "last": losses[-1]}, "eval": evaluation, "grpo": steps,
        "grpo_summary": {"steps": len(steps), "tool_calls": sum(s["tool_calls_per_rollout"] * s["rollouts"] for s in steps),
                         "mean_reward": statistics.fmean(rewards) if rewards else None,
                         "groups_with_reward_spread": sum(1 for s in stds if s > 0), "groups": len(stds),
                         "max_group_std": max(stds) if stds else None}}
    (Path(cfg.out) / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    g = summary["grpo_summary"]
    mean = "-" if g["mean_reward"] is None else f"{g['mean_reward']:.3f}"
    log(f"summary  SFT loss {losses[0]:.2f} -> {losses[-1]:.2f}; {evaluation['share']['catalog_tool']:.0%} of held-out "
        f"samples call a real tool ({evaluation['share']['own_tool']:.0%} one of their environment's); GRPO "
        f"{g['steps']} steps, {g['tool_calls']:.0f} tool calls received by the environments, mean reward {mean}, "
        f"{g['groups_with_reward_spread']}/{g['groups']} groups with reward spread; seconds {timings}")
    return summary


__all__ = ["DEFAULT_ENVS", "SmokeConfig", "run_smoke"]
