"""``envfactory export``: trajectory records to trainer formats, checked before writing."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from envfactory.cli.arguments import existing_dir, fraction, output_dir, store_file


def cmd_export(args) -> int:
    from envfactory.data.exports import export_jsonl
    from envfactory.data.store import RecordStore
    from envfactory.envs.runtime.workspace import current_workspace
    ws = current_workspace()
    args.store = args.store or str(ws.store_path)
    args.out = args.out or str(ws.exports_dir / ("verl" if args.format == "verl" else ""))
    store = RecordStore(args.store, create=False)  # a missing store is an error, not an empty dataset
    if args.format == "verl":
        return _export_verl(args, store)
    if args.tokenizer and not Path(args.tokenizer).is_dir():
        print(f"envfactory: --tokenizer {args.tokenizer}: not a folder (give a local model folder with a tokenizer and "
              "chat template)", file=sys.stderr)
        return 2
    summary = export_jsonl(_records(args, store), args.format, args.out, args.name, tokenizer=args.tokenizer,
                           filters=_filters(args))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        info = summary.get("dataset_info") or summary.get("trainer_script")
        what = "wrote the GRPOTrainer script" if args.format == "trl" else "registered them in"
        skipped = summary["skipped"]
        card = summary.get("llamafactory")
        print(f"wrote {summary['rows']} {args.format} rows to {summary['file']}" + (f" and {what} {info}" if info else "")
              + (f"; settings (cutoff_len {card['cutoff_len']}, template, a training YAML) in {card['card']}" if card else "")
              + (f"; skipped {len(skipped)} record(s) that break the format: {skipped[:2]}" if skipped else ""))
    return 0 if summary["rows"] else 1


def _records(args, store):
    from envfactory.data.exports.card import filter_records
    return filter_records(store.query(env=args.env, status=None if args.all else "accepted"), args.tier, args.model)


def _filters(args) -> dict:
    return {"env": args.env, "all": args.all, "tier": args.tier, "model": args.model}


def _export_verl(args, store) -> int:
    from envfactory.data.exports.verl import write_verl
    records = list(_records(args, store))
    if not records:
        chosen = "".join(f" {k} {v}" for k, v in (("--tier", args.tier), ("--model", args.model)) if v)
        print(f"envfactory: no {'' if args.all else 'accepted '}records{f' of {args.env}' if args.env else ''}"
              f"{' matching' + chosen if chosen else ''} in {args.store}: nothing to export", file=sys.stderr)
        return 1
    if args.tokenizer and not Path(args.tokenizer).is_dir():
        print(f"envfactory: --tokenizer {args.tokenizer}: not a folder (give a local model folder with a tokenizer and "
              "chat template)", file=sys.stderr)
        return 2
    summary = write_verl(records, args.out, args.name, args.val_fraction, tokenizer=args.tokenizer, filters=_filters(args))
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
    p = sub.add_parser("export", help="export verified trajectories for trainers (openai, openai-ft, sharegpt, alpaca, "
                                      "trl, verl)")
    p.add_argument("--format", choices=["openai", "openai-ft", "sharegpt", "alpaca", "trl", "verl"], required=True,
                   help="openai-ft: OpenAI's fine-tuning format exactly (arguments as JSON strings, tool messages "
                        "without name); trl: GRPOTrainer rows (one per user turn) plus a script wiring our "
                        "environments and reward")
    p.add_argument("--store", type=store_file, default=None, help="the record store to read (default: the workspace's records.sqlite)")
    p.add_argument("--out", type=output_dir, default=None, help="where the files go (default: the workspace's exports/, verl: exports/verl)")
    p.add_argument("--name", default="envfactory", help="dataset name (file stem and dataset_info key)")
    p.add_argument("--env", help="only records of this environment")
    p.add_argument("--all", action="store_true", help="include rejected records too")
    p.add_argument("--tier", action="append", default=None,
                   help="only records made at this tier (repeatable, all must hold): 'model' (no step ran an offline "
                        "tier), 'offline' (some step did), or a step's exact tier such as offline:oracle")
    p.add_argument("--model", action="append", default=None,
                   help="only records some step of which used this model (repeatable: any of them)")
    p.add_argument("--val-fraction", type=fraction, default=0.1, help="verl: share of chains in the validation split")
    p.add_argument("--tokenizer", type=existing_dir, help="verl, sharegpt, alpaca: a local model folder whose chat template measures the "
                                       "lengths the printed settings use (verl's prompt/response lengths, LlamaFactory's "
                                       "cutoff_len); it also becomes the model path there")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_export)
