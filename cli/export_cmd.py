"""``envfactory export``: trajectory records to trainer formats, checked before writing."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def export_jsonl(records, fmt: str, out: str | Path, name: str) -> dict:
    """Write records in a JSON-lines format (openai, sharegpt, alpaca, trl), each row checked against the
    format's rules first; sharegpt and alpaca are also registered in ``dataset_info.json``, and trl gets
    the script that wires our environments into GRPOTrainer."""
    from envfactory.data.exports import FORMATS, dataset_info_entry
    from envfactory.envs.errors import EnvironmentPackageError, UntrustedCodeError
    convert, check = FORMATS[fmt]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}.{fmt}.jsonl"
    rows, skipped, environments = 0, [], set()
    with target.open("w", encoding="utf-8") as fh:
        for record in records:
            try:
                converted = convert(record)
            except (EnvironmentPackageError, UntrustedCodeError, ValueError) as exc:
                # e.g. a synthesized environment not on ENVFACTORY_CATALOG_PATH: its records are skipped, with why
                skipped.append({"key": record.key, "problems": [str(exc)]})
                continue
            for row in converted:
                problems = check(row)
                if problems:  # a trainer would drop it silently; say why here instead
                    skipped.append({"key": record.key, "problems": problems[:3]})
                    continue
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                rows += 1
                if fmt == "trl":
                    environments.add(row["environment"])
    info = None
    if fmt == "trl" and rows:  # TRL steps our environments itself: write the script that wires them in
        from envfactory.data.exports.trl_env import FACTORY_SNIPPET
        info = out / f"{name}.trl_train.py"
        info.write_text(FACTORY_SNIPPET.format(rows_file=target.name, name=name, envs=sorted(environments)),
                        encoding="utf-8")
    if fmt in ("sharegpt", "alpaca"):
        info = out / "dataset_info.json"
        existing = json.loads(info.read_text()) if info.exists() else {}
        existing.update(dataset_info_entry(f"{name}_{fmt}", target.name, fmt))
        info.write_text(json.dumps(existing, indent=2))
    return {"format": fmt, "file": str(target), "rows": rows, "skipped": skipped,
            "dataset_info" if fmt != "trl" else "trainer_script": str(info) if info else None}


def cmd_export(args) -> int:
    from envfactory.data.store import RecordStore
    store = RecordStore(args.store)
    if args.format == "verl":
        return _export_verl(args, store)
    summary = export_jsonl(store.query(env=args.env, status=None if args.all else "accepted"), args.format, args.out,
                           args.name)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        info = summary.get("dataset_info") or summary.get("trainer_script")
        what = "wrote the GRPOTrainer script" if args.format == "trl" else "registered them in"
        skipped = summary["skipped"]
        print(f"wrote {summary['rows']} {args.format} rows to {summary['file']}" + (f" and {what} {info}" if info else "")
              + (f"; skipped {len(skipped)} record(s) that break the format: {skipped[:2]}" if skipped else ""))
    return 0 if summary["rows"] else 1


def _export_verl(args, store) -> int:
    from envfactory.data.exports.verl import write_verl
    records = list(store.query(env=args.env, status=None if args.all else "accepted"))
    if not records:
        print(f"no {'' if args.all else 'accepted '}records{f' of {args.env}' if args.env else ''} in {args.store}: "
              "nothing to export", file=sys.stderr)
        return 1
    summary = write_verl(records, args.out, args.name, args.val_fraction)
    total = sum(summary["rows"].values())
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"wrote {summary['rows']['train']} train and {summary['rows']['val']} val verl rows to {args.out} "
              f"(tool config, agent loop config, reward_fn.py and README.md beside them)"
              + (f"; skipped {len(summary['skipped'])}: {summary['skipped'][:2]}" if summary["skipped"] else "")
              + (f"; left out of the tool config (verl would refuse them): {summary['tool_config_problems'][:3]}"
                 if summary["tool_config_problems"] else ""))
    return 0 if total else 1


def register(sub) -> None:
    p = sub.add_parser("export", help="export verified trajectories for trainers (openai, sharegpt, alpaca, trl, verl)")
    p.add_argument("--format", choices=["openai", "sharegpt", "alpaca", "trl", "verl"], required=True,
                   help="trl: GRPOTrainer rows (one per user turn) plus a script wiring our environments and reward")
    p.add_argument("--store", default="out/run/records.sqlite", help="the record store to read")
    p.add_argument("--out", default="out/export")
    p.add_argument("--name", default="envfactory", help="dataset name (file stem and dataset_info key)")
    p.add_argument("--env", help="only records of this environment")
    p.add_argument("--all", action="store_true", help="include rejected records too")
    p.add_argument("--val-fraction", type=float, default=0.1, help="verl: share of chains in the validation split")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_export)
