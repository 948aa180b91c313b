"""``envfactory envs``: list, validate, import, serve and call environments."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _print(args, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if args.json else text)


def cmd_list(args) -> int:
    from envfactory.envs import Environment, catalog_names
    rows = []
    for name in catalog_names():
        env = Environment.load(name)
        conn = env._scratch(env.initial_state)
        rows_total = sum(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in env.tables)
        conn.close()
        specs = env.tool_specs
        rows.append({"name": name, "version": env.manifest.version, "domain": env.manifest.domain,
                     "tools": len(specs), "read": sum(t.read_only for t in specs),
                     "write": sum(not t.read_only for t in specs), "tables": len(env.tables), "rows": rows_total,
                     "description": env.manifest.description})
    text = "\n".join([f"{'env':<16}{'domain':<20}{'tools':>6}{'r/w':>8}{'tables':>8}{'rows':>7}"] +
                     [f"{r['name']:<16}{r['domain']:<20}{r['tools']:>6}{str(r['read']) + '/' + str(r['write']):>8}"
                      f"{r['tables']:>8}{r['rows']:>7}" for r in rows])
    _print(args, rows, text)
    return 0


def cmd_call(args) -> int:
    from envfactory.envs import Environment
    env = Environment.load(args.env, trust=args.trust)
    try:
        arguments = json.loads(args.args)
    except json.JSONDecodeError as exc:
        print(f"--args is not valid JSON: {exc.msg} at column {exc.colno}", file=sys.stderr)
        return 2
    with env.episode() as ep:
        result = ep.call(args.tool, arguments)
        diff = ep.diff()
    payload = result.to_dict() | {"state_changes": diff.summary()}
    text = result.text if result.ok else f"error [{result.error_kind}]: {result.error}"
    _print(args, payload, text)
    return 0 if result.ok else 1


def cmd_trust(args) -> int:
    """Grant, revoke or list the user's trust: the only way a non-bundled package runs in-process."""
    from envfactory.envs.runtime import trust
    from envfactory.envs.runtime.packages import resolve_package
    if args.list:
        entries = trust.trusted_entries()
        text = "\n".join(f"{e.get('name', '?'):<20}{e.get('digest', '')[:16]}  {'ok' if e['valid'] else 'BAD SIGNATURE'}"
                         f"  {e.get('by', '')}  {e.get('path', '')}" for e in entries) or "nothing is trusted"
        _print(args, entries, f"trust store: {trust.config_dir() / trust.STORE_FILE}\n{text}")
        return 0
    if not args.target:
        print("name a package (NAME or PATH) or pass --list", file=sys.stderr)
        return 2
    package = resolve_package(args.target)
    if trust.is_bundled(package):
        _print(args, {"package": str(package), "bundled": True}, f"{package.name} is bundled: it is always trusted")
        return 0
    if args.revoke:
        n = trust.revoke_trust(package)
        _print(args, {"package": str(package), "revoked": n},
               f"revoked {n} grant(s) for {package}" if n else f"{package} was not trusted")
        return 0
    entry = trust.grant_trust(package)
    _print(args, entry, f"trusted {entry['name']} ({entry['digest'][:16]}): its tool code now runs in this process; "
                        f"any edit to the package revokes this")
    return 0


def cmd_validate(args) -> int:
    from envfactory.envs.validation.validate import run_validate_command
    return run_validate_command(args)


def cmd_import(args) -> int:
    from envfactory.envs.imports.importer import run_import_command
    return run_import_command(args)


def cmd_serve(args) -> int:
    from envfactory.envs.mcp import run_serve_command
    return run_serve_command(args)


def register(sub: argparse._SubParsersAction) -> None:
    envs = sub.add_parser("envs", help="environment packages: list, validate, import, serve, call")
    esub = envs.add_subparsers(dest="envs_command", metavar="ACTION")

    p = esub.add_parser("list", help="list the bundled environments")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_list)

    p = esub.add_parser("call", help="call one tool on a fresh episode and print the result")
    p.add_argument("env", help="bundled name or package folder")
    p.add_argument("tool")
    p.add_argument("--args", default="{}", help="arguments as a JSON object")
    p.add_argument("--trust", action="store_true", help="run an unverified package's code in this process")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_call)

    p = esub.add_parser("validate", help="validate packages in a sandboxed subprocess")
    p.add_argument("target", nargs="?", help="bundled name or package folder")
    p.add_argument("--all", action="store_true", help="every bundled environment")
    p.add_argument("--timeout", type=float, default=120.0, help="wall-clock seconds per package")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_validate)

    p = esub.add_parser("trust", help="trust a package's code to run in-process (after you reviewed it)")
    p.add_argument("target", nargs="?", help="package name (on ENVFACTORY_CATALOG_PATH) or folder")
    p.add_argument("--revoke", action="store_true", help="withdraw the trust")
    p.add_argument("--list", action="store_true", help="list the trusted packages")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_trust)

    p = esub.add_parser("import", help="turn a Python class file with stateful tools into a package")
    p.add_argument("path", help="a .py file holding the class")
    p.add_argument("--class", dest="class_name", help="the class to import (default: the only candidate)")
    p.add_argument("--out", help="destination folder (default: ./envs_imported/<name>)")
    p.add_argument("--name", help="environment name (default: derived from the class)")
    p.add_argument("--scenario", help="JSON file with the initial state to load (any size)")
    p.add_argument("--import-root", help="folder to put on the import path (default: above the file's package, "
                                         "or its own folder when it imports sibling modules)")
    p.add_argument("--source", choices=["auto", "class", "mcp"], default="auto",
                   help="serve the @mcp.tool() functions of an MCP server file (mcp), the class's methods "
                        "(class), or the functions when there are some (auto)")
    p.add_argument("--no-explore", action="store_true",
                   help="do not explore the tools to classify reads and writes and write tests")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_import)

    p = esub.add_parser("serve", help="serve an environment over MCP (each connection gets its own episode)")
    p.add_argument("env", help="bundled name or package folder")
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--trust", action="store_true", help="run an unverified package's code in this process")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_serve)

    envs.set_defaults(handler=lambda a: (envs.print_help(), 2)[1])
