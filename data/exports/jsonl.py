"""The JSON-lines exports (openai, openai-ft, sharegpt, alpaca, trl): every row checked against its format's rules
before it is written, and every record that cannot be exported reported with its key and the reason."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from envfactory.data.records import TrajectoryRecord
from envfactory.envs.runtime.errors import EnvironmentPackageError, UntrustedCodeError

from envfactory.data.exports.bundle import bundle_environments
from envfactory.data.exports.card import CardStats, write_card as write_dataset_card
from envfactory.data.exports.chat import check_openai, to_openai
from envfactory.data.exports.openai_ft import check_openai_ft, to_openai_ft
from envfactory.data.exports.llamafactory_card import write_card
from envfactory.data.exports.provenance import row_metadata
from envfactory.data.exports.llamafactory import check_alpaca, check_sharegpt, dataset_info_entry, to_alpaca, to_sharegpt
from envfactory.data.exports.trl_env import FACTORY_SNIPPET, check_trl, to_trl

# format -> (converter: record -> rows, checker: row -> problems). verl is not here: it writes parquet
# splits and config files, not one JSONL (see verl.write_verl)
FORMATS = {"openai": (to_openai, check_openai), "openai-ft": (to_openai_ft, check_openai_ft), "sharegpt": (to_sharegpt, check_sharegpt), "alpaca": (to_alpaca, check_alpaca),
           "trl": (to_trl, check_trl)}


def export_jsonl(records: Iterable[TrajectoryRecord], fmt: str, out: str | Path, name: str,
                 tokenizer: str | None = None, filters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write records in a JSON-lines format (openai, sharegpt, alpaca, trl), each row checked against the
    format's rules first; sharegpt and alpaca are also registered in ``dataset_info.json``, and trl gets
    the script that wires our environments into GRPOTrainer.

    ``skipped`` lists each record that lost rows once: its key, its distinct problems, and, when rows failed
    the checker, how many of its rows were left out and how many were written (a record that cannot be
    converted at all has only key and problems). The folder's dataset card (``README.md``, ``card.py``)
    gets this file's section; ``filters``: how the records were chosen, for the card."""
    convert, check = FORMATS[fmt]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}.{fmt}.jsonl"
    rows, skipped, environments = 0, [], set()
    written: list[TrajectoryRecord] = []
    stats = CardStats()
    # OpenAI's fine-tuning format allows no other key on a line: there the metadata goes to a sidecar, line for line
    sidecar = out / f"{name}.{fmt}.metadata.jsonl" if fmt == "openai-ft" else None
    with target.open("w", encoding="utf-8") as fh, (sidecar.open("w", encoding="utf-8") if sidecar else fh) as meta_fh:
        for record in records:
            try:
                converted = convert(record)
            except (EnvironmentPackageError, UntrustedCodeError, ValueError) as exc:
                # e.g. a synthesized environment not on ENVFACTORY_CATALOG_PATH: its records are skipped, with why
                skipped.append({"key": record.key, "problems": [str(exc)]})
                continue
            problems: list[str] = []   # of this record's rows (trl has one per turn): reported once, each reason once
            left_out = 0
            for row in converted:
                found = check(row)
                if found:  # a trainer would drop it silently; say why here instead
                    problems += [p for p in found[:3] if p not in problems]
                    left_out += 1
                    continue
                # every row says what made it (tiers, models, prompt versions): offline rows can be filtered
                if sidecar:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                    meta_fh.write(json.dumps(row_metadata(record), ensure_ascii=False) + "\n")
                else:
                    fh.write(json.dumps({**row, "metadata": row_metadata(record)}, ensure_ascii=False) + "\n")
                rows += 1
                if fmt == "trl":
                    environments.add(row["environment"])
            if left_out < len(converted):
                written.append(record)
                stats.add(record)
            if left_out:
                skipped.append({"key": record.key, "problems": problems, "rows_skipped": left_out,
                                "rows_written": len(converted) - left_out})
    info = None
    packages = {}
    if fmt == "trl" and rows:  # TRL steps our environments itself: write the script that wires them in
        packages = bundle_environments(environments, out)   # and carry them, so the folder alone trains
        info = out / f"{name}.trl_train.py"
        info.write_text(FACTORY_SNIPPET.format(rows_file=target.name, name=name, envs=sorted(environments)),
                        encoding="utf-8")
    card = None
    if fmt in ("sharegpt", "alpaca"):
        info = out / "dataset_info.json"
        existing = json.loads(info.read_text()) if info.exists() else {}
        existing.update(dataset_info_entry(f"{name}_{fmt}", target.name, fmt))
        info.write_text(json.dumps(existing, indent=2))
        if rows:  # what LlamaFactory must be told: cutoff_len, template, mask_history
            card = write_card(written, out, name, fmt, rows, tokenizer)
    dataset_card = write_dataset_card(out, stats.section(
        file=target.name, fmt=fmt, rows=rows, skipped=len(skipped), filters=filters,
        environments={n: p["origin"] for n, p in packages.items()}))
    summary = {"format": fmt, "file": str(target), "rows": rows, "skipped": skipped, "card": str(dataset_card),
               "dataset_info" if fmt != "trl" else "trainer_script": str(info) if info else None}
    if sidecar:
        summary["metadata"] = str(sidecar)
    return {**summary, "llamafactory": card} if card else summary
