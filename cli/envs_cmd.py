"""``envfactory envs``: list, validate, import, serve and call environments."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from envfactory.cli.arguments import existing_file, output_dir, port, positive_float, positive_int


def _print(args, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if args.json else text)


def cmd_list(args) -> int:
    from envfactory.envs import Environment
    from envfactory.envs.runtime.errors import EnvironmentPackageError, UntrustedCodeError
    from envfactory.envs.runtime.packages import known_packages
    rows = []
    for name, path, origin in known_packages():
        try:
            env = Environment.load(path)
        except (EnvironmentPackageError, UntrustedCodeError) as exc:  # listed, with why it cannot load here
            rows.append({"name": name, "origin": origin, "path": str(path), "problem": str(exc)})
            continue
        conn = env._scratch(env.initial_state)
        rows_total = sum(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in env.tables)
        conn.close()
        specs = env.tool_specs
        rows.append({"name": name, "origin": origin, "path": str(path), "version": env.manifest.version, "domain": env.manifest.domain,
                     "tools": len(specs), "read": sum(t.read_only for t in specs),
                     "write": sum(not t.read_only for t in specs), "tables": len(env.tables), "rows": rows_total,
                     "description": env.manifest.description})
    text = "\n".join([f"{'env':<24}{'origin':<11}{'domain':<20}{'tools':>6}{'r/w':>8}{'tables':>8}{'rows':>7}"] +
                     [f"{r['name']:<24}{r['origin']:<11}" + (f"cannot load: {r['problem']}" if "problem" in r else
                      f"{r['domain']:<20}{r['tools']:>6}{str(r['read']) + '/' + str(r['write']):>8}"
                      f"{r['tables']:>8}{r['rows']:>7}") for r in rows])
    _print(args, rows, text)
    return 0


def cmd_call(args) -> int:
    from envfactory.envs import Environment
    try:
        arguments = json.loads(args.args)
    except json.JSONDecodeError as exc:
        print(f"envfactory: --args is not valid JSON: {exc.msg} at column {exc.colno}", file=sys.stderr)
        return 2
    # untrusted packages run in a contained child server (same contract)
    env = Environment.load(args.env, trust=True) if args.trust else Environment.open(args.env)
    try:
        with env.episode() as ep:
            result = ep.call(args.tool, arguments)
            diff = ep.diff()
    finally:
        if getattr(env, "sandboxed", False):
            env.close()
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
        print("envfactory: name a package (NAME or PATH) or pass --list", file=sys.stderr)
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

    p = esub.add_parser("list", help="list the environments: bundled, the workspace's catalog, ENVFACTORY_CATALOG_PATH")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_list)

    p = esub.add_parser("call", help="call one tool on a fresh episode and print the result")
    p.add_argument("env", help="environment name (bundled or in the workspace's catalog) or package folder")
    p.add_argument("tool", help="the tool's name")
    p.add_argument("--args", default="{}", help="arguments as a JSON object")
    p.add_argument("--trust", action="store_true", help="run an untrusted package's code in this process, this once "
                                                          "(otherwise it runs in the sandbox)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_call)

    p = esub.add_parser("validate", help="validate packages in a sandboxed subprocess")
    p.add_argument("target", nargs="?", help="environment name (bundled or in the workspace's catalog) or package folder")
    p.add_argument("--all", action="store_true", help="every bundled environment")
    p.add_argument("--timeout", type=positive_float, default=120.0, help="wall-clock seconds per package")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_validate)

    p = esub.add_parser("trust", help="trust a package's code to run in-process (after you reviewed it)")
    p.add_argument("target", nargs="?", help="package name (on ENVFACTORY_CATALOG_PATH) or folder")
    p.add_argument("--revoke", action="store_true", help="withdraw the trust")
    p.add_argument("--list", action="store_true", help="list the trusted packages")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_trust)

    p = esub.add_parser("import", help="turn a Python class file with stateful tools into a package")
    p.add_argument("path", type=existing_file, help="a .py file holding the class")
    p.add_argument("--class", dest="class_name", help="the class to import (default: the only candidate)")
    p.add_argument("--out", type=output_dir, help="destination folder (default: ./envs_imported/<name>)")
    p.add_argument("--name", help="environment name (default: derived from the class)")
    p.add_argument("--scenario", type=existing_file, help="JSON file with the initial state to load (any size)")
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
    p.add_argument("env", help="environment name (bundled or in the workspace's catalog) or package folder")
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="stdio (one client) or streamable HTTP")
    p.add_argument("--host", default="127.0.0.1", help="http: the address to listen on")
    p.add_argument("--port", type=port, default=8765, help="http: the port to listen on")
    p.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                   help="an Origin (e.g. https://app.example) browsers may call from (http; repeatable)")
    p.add_argument("--idle-seconds", type=positive_float, default=1800.0, help="close sessions and episodes idle this long (http)")
    p.add_argument("--max-episodes", type=positive_int, default=1024, help="episodes the server holds at most (http)")
    p.add_argument("--trust", action="store_true", help="run an untrusted package's code in this process, this once "
                                                          "(otherwise it runs in the sandbox)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_serve)

    envs.set_defaults(handler=lambda a: (envs.print_help(), 2)[1])
