"""What a LlamaFactory user must set to train on our sharegpt / alpaca exports, written beside them: a dataset
card (``{name}_{fmt}.card.md``) and an example training YAML (``{name}_{fmt}.llamafactory.yaml``).

- ``cutoff_len``: the longest sample (the whole conversation with its tools: an alpaca sample's history is
  part of its input) in tokens, 25% up, rounded to 256. LlamaFactory's default 2048 cuts most of our
  samples, tools and the user's question included. With ``--tokenizer MODEL_DIR`` it is measured with that
  model's chat template; without, estimated from UTF-8 bytes (a bound for byte-level BPE tokenizers).
- ``template``: ``qwen3_nothink`` for Qwen3 models trained without thinking (``qwen3`` adds an empty think
  block to every assistant turn); other model families take their own template.
- alpaca: ``mask_history: true``, or LlamaFactory trains every reply in ``history`` again (each step's
  sample repeats all earlier steps).

``python -m envfactory.data.exports.llamafactory_check`` (in a venv with LlamaFactory) loads the files
through LlamaFactory's own ``get_dataset`` and reports truncation at the card's ``cutoff_len``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from envfactory.data.records import TrajectoryRecord
from envfactory.data.exports.verl_command import MARGIN, _template_messages

ROUND_TO = 256
TEMPLATE = "qwen3_nothink"


def longest_sample(records: list[TrajectoryRecord], tokenizer_path: str | None) -> tuple[int, str]:
    """The longest conversation with its tools, in tokens (measured or estimated), and how it was found."""
    longest = 0
    if tokenizer_path:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(tokenizer_path)
        for r in records:
            ids = tok.apply_chat_template(_template_messages([m.openai() for m in r.messages]), tools=r.tools or None,
                                          tokenize=True)
            longest = max(longest, len(ids["input_ids"] if hasattr(ids, "keys") else ids))
        return longest, f"measured with the chat template of {tokenizer_path}"
    for r in records:
        size = len(json.dumps([m.openai() for m in r.messages], ensure_ascii=False).encode())
        longest = max(longest, size + len(json.dumps(r.tools, ensure_ascii=False).encode()) + 32 * len(r.messages))
    return longest, "estimated from UTF-8 bytes (pass --tokenizer MODEL_DIR to measure it)"


def cutoff_len(longest: int) -> int:
    return max(ROUND_TO, math.ceil(longest * MARGIN / ROUND_TO) * ROUND_TO)


def training_yaml(dataset: str, fmt: str, dataset_dir: Path, cutoff: int, model_path: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_name_or_path": model_path or "MODEL_PATH",
        "stage": "sft", "do_train": True, "finetuning_type": "lora", "lora_target": "all",
        "dataset": dataset, "dataset_dir": str(Path(dataset_dir).resolve()),
        "template": TEMPLATE, "cutoff_len": cutoff,
        "output_dir": f"saves/{dataset}", "per_device_train_batch_size": 1, "gradient_accumulation_steps": 8,
        "learning_rate": 1.0e-4, "num_train_epochs": 2.0, "lr_scheduler_type": "cosine", "bf16": True,
    }
    if fmt == "alpaca":
        config["mask_history"] = True
    return config


def write_card(records: list[TrajectoryRecord], out: Path, name: str, fmt: str, rows: int,
               tokenizer_path: str | None) -> dict[str, Any]:
    dataset = f"{name}_{fmt}"
    longest, how = longest_sample(records, tokenizer_path)
    cutoff = cutoff_len(longest)
    config = training_yaml(dataset, fmt, out, cutoff, tokenizer_path)
    yaml_path = out / f"{dataset}.llamafactory.yaml"
    yaml_path.write_text(yaml.safe_dump(config, sort_keys=False))
    alpaca = ("\n- `mask_history: true`: each sample repeats the earlier steps as `history`; without it LlamaFactory "
              "trains those replies again in every later sample." if fmt == "alpaca" else "")
    card = out / f"{dataset}.card.md"
    card.write_text(f"""# {dataset}

{rows} {fmt} samples for LlamaFactory (`dataset_info.json` registers `{dataset}`), from verified envfactory trajectories.

Settings (all in `{yaml_path.name}`: `llamafactory-cli train {yaml_path.name}`):
- `cutoff_len: {cutoff}`: the longest sample (conversation with its tool schemas) is {longest} tokens, {how};
  the setting is {int((MARGIN - 1) * 100)}% above it. At LlamaFactory's default 2048 longer samples lose their
  end, the tools and the user's question included.
- `template: {TEMPLATE}` for a Qwen3 model trained without thinking (`qwen3` adds an empty think block to every
  assistant turn); use your model family's template otherwise.{alpaca}

Check the files with LlamaFactory itself (in its own venv): `python -m envfactory.data.exports.llamafactory_check
{out.resolve()} --model MODEL_DIR --cutoff-len {cutoff}` loads them through LlamaFactory's `get_dataset` and
reports how many samples that cutoff truncates.
""")
    return {"card": str(card), "training_yaml": str(yaml_path), "cutoff_len": cutoff, "longest_sample": longest}
