"""``envfactory prompts``: list and show versioned prompt templates."""
from __future__ import annotations

import json
import sys

from envfactory.cli.arguments import existing_dir


def cmd_list(args) -> int:
    from envfactory.prompts.registry import PromptRegistry
    reg = PromptRegistry(extra_dirs=args.dir)
    rows = []
    for pid in reg.ids():
        latest = reg.get(pid)
        rows.append({"id": pid, "versions": reg.versions(pid), "latest": latest.version,
                     "variables": latest.front.variables(), "description": latest.front.description,
                     "output_schema": latest.front.output_schema})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['id']:<26}{','.join(r['versions']):<10}{', '.join(r['variables']):<34}{r['description']}")
    return 0


def cmd_show(args) -> int:
    from envfactory.prompts.registry import PromptError, PromptRegistry
    reg = PromptRegistry(extra_dirs=args.dir)
    pid, _, version = args.ref.partition("@")
    try:
        t = reg.get(pid, version or "latest")
    except PromptError as exc:
        print(f"envfactory: {exc}", file=sys.stderr)
        return 2
    info = {"id": t.id, "version": t.version, "sha256": t.sha256, "path": str(t.path),
            "variables": t.front.variables(), "output_schema": t.front.output_schema, "description": t.front.description,
            "body": t.body}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{t.id}@{t.version}  sha256 {t.sha256[:16]}  variables: {', '.join(info['variables'])}\n{t.path}\n")
        print(t.body)
    return 0


def register(sub) -> None:
    p = sub.add_parser("prompts", help="versioned prompt templates")
    psub = p.add_subparsers(dest="prompts_command", metavar="ACTION")
    q = psub.add_parser("list", help="ids, versions, variables")
    q.add_argument("--dir", action="append", type=existing_dir, default=[], help="your own template directory (repeatable)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_list)
    q = psub.add_parser("show", help="one template: ID or ID@VERSION")
    q.add_argument("ref")
    q.add_argument("--dir", action="append", type=existing_dir, default=[], help="your own template directory (repeatable)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_show)
    p.set_defaults(handler=lambda a: (p.print_help(), 2)[1])
