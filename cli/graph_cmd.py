"""``envfactory graph`` and ``envfactory sample``: tool dependency graphs and gold chains."""
from __future__ import annotations

import json
from pathlib import Path

from envfactory.cli.arguments import output_dir, positive_int


def _workspace_dir(name: str) -> Path:
    from envfactory.envs.runtime.workspace import current_workspace
    return current_workspace().ensure().root / name


def _load(names, trust):
    from envfactory.envs import Environment
    return [Environment.load(n, trust=True) if trust else Environment.open(n) for n in names]


def cmd_graph(args) -> int:
    from envfactory.envs.chains.confirm import build_tool_graph
    envs = _load(args.env, args.trust)
    if args.model_proposals:
        from envfactory.agents.graph_agent import build_with_model
        from envfactory.agents.models import resolve_model
        model = resolve_model("search")
        if model is None:
            print("envfactory: --model-proposals needs a model for the 'search' role (ENVFACTORY_MODEL or ENVFACTORY_SEARCH_MODEL)")
            return 2
        tg, info = build_with_model(envs, model)
        print(f"model proposed {info['proposed']} edge(s); rejected: {info['rejected'] or 'none'}")
    else:
        tg = build_tool_graph(envs, confirm=not args.no_confirm)
    out = Path(args.out) if args.out else _workspace_dir("graphs")
    stem = "+".join(e.name for e in envs)
    paths = tg.write(out, stem)
    paths["picture"] = tg.draw(out / f"{stem}.{args.format}")
    summary = tg.summary()
    if args.json:
        print(json.dumps({"summary": summary, "files": {k: str(v) for k, v in paths.items()}}, indent=2))
        return 0
    print(f"tool graph of {stem}: {summary['tools']} tools, {summary['edges']} edges "
          f"({summary['confirmed_edges']} confirmed by execution, {summary['unconfirmed_edges']} not), "
          f"longest confirmed chain {summary['depth_confirmed']} calls")
    print(f"parameters: {summary['user_parameters']} stated by users, {summary['tool_parameters']} from tools; "
          f"edges by source: {summary['edges_by_source']}")
    for u, v, d in sorted(tg.edges(True), key=lambda e: (e[0], e[1])):
        print(f"  {u} --{d['field']}->{d['param']}--> {v}  [{d['source']}]")
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0


def cmd_sample(args) -> int:
    from envfactory.envs.chains.sampling import ChainSampler, SamplerConfig, chain_statistics, sample_many
    from envfactory.envs.chains.confirm import build_tool_graph
    envs = _load(args.env, args.trust)
    tg = build_tool_graph(envs)
    config = SamplerConfig(min_length=args.min_length, max_length=args.max_length, max_envs=args.max_envs,
                           allow_repeat=args.allow_repeat, confirmed_only=not args.unconfirmed)
    kept, dropped = sample_many(ChainSampler(tg, config), args.n, seed=args.seed, progress=not args.json)
    out = Path(args.out) if args.out else _workspace_dir("chains")
    out.mkdir(parents=True, exist_ok=True)
    stem = "+".join(e.name for e in envs)
    chains_path = out / f"{stem}.chains.jsonl"
    with chains_path.open("w") as fh:
        for t in kept:
            fh.write(t.model_dump_json() + "\n")
    dropped_path = out / f"{stem}.discarded.jsonl"
    with dropped_path.open("w") as fh:
        for d in dropped:
            fh.write(d.model_dump_json() + "\n")
    stats = chain_statistics(tg, kept, dropped)
    if args.json:
        print(json.dumps({"statistics": stats, "chains": str(chains_path), "discarded": str(dropped_path)}, indent=2))
    else:
        print(f"{stats['kept']} gold trajectories, {stats['discarded']} chains discarded "
              f"(tool coverage {stats['tool_coverage']:.0%}, edge coverage {stats['edge_coverage']:.0%}, "
              f"mean length {stats['mean_length']:.1f}, reads {stats['read_share']:.0%})")
        print(f"lengths: {stats['length_distribution']}; discard reasons: {stats['discard_reasons']}")
        print(f"wrote {chains_path} and {dropped_path}")
    return 0 if kept else 1


def register(sub) -> None:
    p = sub.add_parser("graph", help="build, confirm and draw the tool dependency graph of environments")
    p.add_argument("env", nargs="+", help="bundled names or package folders")
    p.add_argument("--out", type=output_dir, default=None, help="where the files go (default: the workspace's graphs/)")
    p.add_argument("--format", choices=["png", "svg"], default="svg", help="the picture's format")
    p.add_argument("--no-confirm", action="store_true", help="skip confirmation by execution")
    p.add_argument("--model-proposals", action="store_true", help="also ask the 'search' role's model for edges (confirmed by execution)")
    p.add_argument("--trust", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_graph)

    p = sub.add_parser("sample", help="sample tool chains and execute them into gold trajectories")
    p.add_argument("env", nargs="+", help="bundled names or package folders")
    p.add_argument("--n", type=positive_int, default=20, help="chains to sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-length", type=positive_int, default=2, help="fewest calls in a chain")
    p.add_argument("--max-length", type=positive_int, default=6, help="most calls in a chain")
    p.add_argument("--max-envs", type=positive_int, default=1, help="environments per chain when several are given")
    p.add_argument("--allow-repeat", action="store_true", help="let a tool appear twice in a chain")
    p.add_argument("--unconfirmed", action="store_true", help="also follow edges not confirmed by execution")
    p.add_argument("--out", type=output_dir, default=None, help="where the files go (default: the workspace's chains/)")
    p.add_argument("--trust", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_sample)
