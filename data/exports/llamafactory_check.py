"""Load our sharegpt / alpaca exports through LlamaFactory's own ``get_dataset`` and report truncation.

Run it in a venv with LlamaFactory (it pins its own transformers, so not in envfactory's; not part of CI):

    python -m envfactory.data.exports.llamafactory_check EXPORT_DIR --model MODEL_DIR [--cutoff-len N]
        [--template qwen3_nothink] [--dataset envfactory_sharegpt ...]

For each dataset registered in ``EXPORT_DIR/dataset_info.json`` it encodes every sample twice with
LlamaFactory's template and tokenizer, at the chosen ``cutoff_len`` (default: the card's) and with no
practical limit, and prints, as JSON: samples loaded, samples the cutoff truncates, the longest sample, and
the tokens trained (labels that are not masked; alpaca is encoded with ``mask_history: true``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

NO_LIMIT = 1_000_000


def _cutoff_from_card(export: Path, dataset: str) -> int | None:
    card = export / f"{dataset}.card.md"
    found = re.search(r"`cutoff_len: (\d+)`", card.read_text()) if card.exists() else None
    return int(found.group(1)) if found else None


def _encode(export: Path, dataset: str, model: str, template: str, cutoff: int, alpaca: bool) -> list[dict[str, Any]]:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer
    # LlamaFactory prints a decoded example to stdout: keep stdout for this script's JSON report
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        args = {"model_name_or_path": model, "stage": "sft", "do_train": True, "finetuning_type": "lora",
                "dataset": dataset, "dataset_dir": str(export), "template": template, "cutoff_len": cutoff,
                "output_dir": tmp, "overwrite_cache": True, "preprocessing_num_workers": 1, "report_to": "none"}
        if alpaca:
            args["mask_history"] = True
        model_args, data_args, training_args, _, _ = get_train_args(args)
        tokenizer_module = load_tokenizer(model_args)
        tmpl = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
        module = get_dataset(tmpl, model_args, data_args, training_args, stage="sft", **tokenizer_module)
        return list(module["train_dataset"])


def check(export: Path, dataset: str, model: str, template: str, cutoff: int | None) -> dict[str, Any]:
    info = json.loads((export / "dataset_info.json").read_text())[dataset]
    alpaca = info.get("formatting") == "alpaca"
    cutoff = cutoff or _cutoff_from_card(export, dataset) or 2048
    rows = sum(1 for line in (export / info["file_name"]).read_text().splitlines() if line.strip())
    cut = _encode(export, dataset, model, template, cutoff, alpaca)
    full = _encode(export, dataset, model, template, NO_LIMIT, alpaca)
    lengths = [len(s["input_ids"]) for s in full]
    truncated = sum(1 for a, b in zip(cut, full) if len(a["input_ids"]) < len(b["input_ids"]))
    return {"dataset": dataset, "formatting": info.get("formatting"), "rows_in_file": rows, "samples_loaded": len(cut),
            "cutoff_len": cutoff, "template": template, "mask_history": alpaca, "truncated": truncated,
            "longest_sample": max(lengths, default=0),
            "trained_tokens": sum(sum(1 for t in s["labels"] if t != -100) for s in cut)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("export", type=Path, help="the export folder (with dataset_info.json)")
    p.add_argument("--model", required=True, help="a local model folder (its tokenizer)")
    p.add_argument("--cutoff-len", type=int, help="default: the dataset card's")
    p.add_argument("--template", default="qwen3_nothink")
    p.add_argument("--dataset", action="append", help="default: every dataset in dataset_info.json")
    args = p.parse_args(argv)
    info_path = args.export / "dataset_info.json"
    if not info_path.exists():
        print(f"{info_path} does not exist: export with --format sharegpt or alpaca first", file=sys.stderr)
        return 2
    try:
        import llamafactory  # noqa: F401
    except ImportError:
        print("LlamaFactory is not installed in this Python: run this in LlamaFactory's venv", file=sys.stderr)
        return 2
    datasets = args.dataset or sorted(json.loads(info_path.read_text()))
    reports = [check(args.export, d, args.model, args.template, args.cutoff_len) for d in datasets]
    print(json.dumps(reports, indent=2))
    return 1 if any(r["truncated"] or r["samples_loaded"] == 0 for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
