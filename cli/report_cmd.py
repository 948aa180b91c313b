"""``envfactory report``: a static HTML site of a workspace (open its index.html; no server)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from envfactory.cli.arguments import non_negative_int, output_dir


def cmd_report(args) -> int:
    from envfactory.data.report import build_report
    from envfactory.envs.runtime.workspace import current_workspace
    workspace = current_workspace().root
    if not workspace.is_dir():
        print(f"envfactory: workspace {workspace} does not exist (run `envfactory run` first, or give --workspace)",
              file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else workspace / "report"
    result = build_report(workspace, out, limit=args.limit, progress=not args.json, run_tests=not args.no_tests)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"report of {workspace}: {result['environments']} environments, {result['trajectories']} trajectories, "
              f"{result['synthesis_runs']} synthesis runs in {result['seconds']} s; open {result['index']}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("report", help="write a static HTML site of a workspace: environments, trajectories, synthesis",
                       description=__doc__)
    p.add_argument("--out", type=output_dir, default=None, help="where the site goes (default: WORKSPACE/report)")
    p.add_argument("--limit", type=non_negative_int, default=None, help="at most this many trajectory pages (default: all)")
    p.add_argument("--no-tests", action="store_true",
                   help="do not run bundled environments' tests for the environment pages (faster)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=cmd_report)
