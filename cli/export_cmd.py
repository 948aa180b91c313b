"""``envfactory export``: trajectory records to trainer formats, checked before writing."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_export(args) -> int:
    from envfactory.data.exports import FORMATS, dataset_info_entry
    from envfactory.data.store import RecordStore
    convert, check = FORMATS[args.format]
    store = RecordStore(args.store)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{args.name}.{args.format}.jsonl"
    rows, skipped = 0, []
    with target.open("w", encoding="utf-8") as fh:
        for record in store.query(env=args.env, status=None if args.all else "accepted"):
            for row in convert(record):
                problems = check(row)
                if problems:  # a trainer would drop it silently; say why here instead
                    skipped.append({"key": record.key, "problems": problems[:3]})
                    continue
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                rows += 1
    info = None
    if args.format == "trl" and rows:  # TRL steps our environments itself: write the script that wires them in
        from envfactory.data.exports.trl_env import FACTORY_SNIPPET
        envs = sorted({json.loads(line)["environment"] for line in target.read_text(encoding="utf-8").splitlines()})
        info = out / f"{args.name}.trl_train.py"
        info.write_text(FACTORY_SNIPPET.format(rows_file=target.name, name=args.name, envs=envs), encoding="utf-8")
    if args.format in ("sharegpt", "alpaca"):
        info = out / "dataset_info.json"
        existing = json.loads(info.read_text()) if info.exists() else {}
        existing.update(dataset_info_entry(f"{args.name}_{args.format}", target.name, args.format))
        info.write_text(json.dumps(existing, indent=2))
    summary = {"format": args.format, "file": str(target), "rows": rows, "skipped": skipped,
               "dataset_info" if args.format != "trl" else "trainer_script": str(info) if info else None}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"wrote {rows} {args.format} rows to {target}" + (f" and {'wrote the GRPOTrainer script' if args.format == 'trl' else 'registered them in'} {info}" if info else "")
              + (f"; skipped {len(skipped)} record(s) that break the format: {skipped[:2]}" if skipped else ""))
    return 0 if rows else 1


def register(sub) -> None:
    p = sub.add_parser("export", help="export verified trajectories for trainers (openai, sharegpt, alpaca, trl)")
    p.add_argument("--format", choices=["openai", "sharegpt", "alpaca", "trl"], required=True,
                   help="trl: GRPOTrainer rows (one per user turn) plus a script wiring our environments and reward")
    p.add_argument("--store", default="out/run/records.sqlite", help="the record store to read")
    p.add_argument("--out", default="out/export")
    p.add_argument("--name", default="envfactory", help="dataset name (file stem and dataset_info key)")
    p.add_argument("--env", help="only records of this environment")
    p.add_argument("--all", action="store_true", help="include rejected records too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_export)
