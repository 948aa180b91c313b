"""``envfactory train-smoke``: SFT then GRPO with TRL on our exports, environments and reward.

Offline on a CPU in a few minutes with a tiny random Qwen3 and a tokenizer trained on our text;
``--model PATH --device cuda`` runs the same pipeline on a real base model.
"""
from __future__ import annotations

import json
import sys

from envfactory.cli.arguments import existing_dir, output_dir, positive_float, positive_int


def cmd_train_smoke(args) -> int:
    try:
        from envfactory.data.training.smoke import SmokeConfig, run_smoke
        import trl  # noqa: F401  (checked here so the message can say how to get it)
    except ModuleNotFoundError as exc:
        print(f"envfactory: train-smoke needs the training extra ({exc.name} is missing): "
              "pip install -e '.[train]'", file=sys.stderr)
        return 2
    from envfactory.envs.runtime.workspace import current_workspace
    cfg = SmokeConfig(out=args.out or str(current_workspace().ensure().root / "train-smoke"), envs=args.envs or SmokeConfig().envs, tasks_per_env=args.tasks_per_env,
                      seed=args.seed, model=args.model, device=args.device, sft_steps=args.sft_steps,
                      sft_lr=args.sft_lr if args.sft_lr is not None else (1e-5 if args.model else SmokeConfig.sft_lr),
                      grpo_steps=args.grpo_steps, num_generations=args.num_generations,
                      max_completion_length=args.max_completion_length, max_tool_iterations=args.max_tool_iterations,
                      grpo_read_only_tasks=not (args.grpo_all_tasks or args.model),
                      max_length=args.max_length or (4096 if args.model else SmokeConfig.max_length))
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else (lambda line: print(line, flush=True))
    summary = run_smoke(cfg, log=log)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    return 0


def register(sub) -> None:
    from envfactory.data.training.smoke import SmokeConfig as SmokeConfigDefaults  # stdlib-only module: cheap
    p = sub.add_parser("train-smoke", help="prove the data trains: TRL SFT then GRPO in our environments (tiny model, CPU)")
    p.add_argument("envs", nargs="*", help="bundled environments (default: a five-environment subset)")
    p.add_argument("--out", type=output_dir, default=None, help="records, exports, checkpoints and summary.json "
                                               "(default: the workspace's train-smoke/)")
    p.add_argument("--tasks-per-env", type=positive_int, default=16, help="QueryGen tasks per environment")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", type=existing_dir, help="a real base model (local folder with a chat template TRL can parse); "
                                   "default: a tiny random Qwen3 built here")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu",
                   help="cpu (default), cuda, or auto (whatever accelerate finds)")
    p.add_argument("--sft-steps", type=positive_int, default=SmokeConfigDefaults.sft_steps, help="SFT optimizer steps")
    p.add_argument("--sft-lr", type=positive_float, help=f"default: {SmokeConfigDefaults.sft_lr} for the tiny model, 1e-5 with --model")
    p.add_argument("--max-length", type=positive_int, help=f"SFT sequence cap (default {SmokeConfigDefaults.max_length} for the "
                                                   "tiny model, whose tokenizer packs a dozen tool schemas in ~70 tokens; "
                                                   "4096 with --model)")
    p.add_argument("--grpo-steps", type=positive_int, default=SmokeConfigDefaults.grpo_steps, help="GRPO optimizer steps")
    p.add_argument("--num-generations", type=positive_int, default=SmokeConfigDefaults.num_generations, help="rollouts per prompt (GRPO group)")
    p.add_argument("--max-completion-length", type=positive_int, default=SmokeConfigDefaults.max_completion_length,
                   help="GRPO: tokens per sampled completion")
    p.add_argument("--max-tool-iterations", type=positive_int, default=SmokeConfigDefaults.max_tool_iterations,
                   help="GRPO: tool calls per rollout")
    p.add_argument("--grpo-all-tasks", action="store_true",
                   help="GRPO on every user turn (default with --model); the tiny model starts from turns that only read")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (progress goes to stderr)")
    p.set_defaults(handler=cmd_train_smoke)

