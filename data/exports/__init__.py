"""Exporters from the canonical trajectory record to what trainers load, each with a checker that
applies the format's own rules (so a file that would be silently skipped by a trainer is caught here)."""
from envfactory.data.exports.chat import check_openai, to_openai
from envfactory.data.exports.openai_ft import check_openai_ft, to_openai_ft
from envfactory.data.exports.llamafactory import check_alpaca, check_sharegpt, dataset_info_entry, to_alpaca, to_sharegpt
from envfactory.data.exports.trl_env import check_trl, to_trl
from envfactory.data.exports.jsonl import FORMATS, export_jsonl
from envfactory.data.exports.verl import check_verl, to_verl, write_verl

__all__ = ["FORMATS", "check_alpaca", "check_openai", "check_openai_ft", "check_sharegpt", "check_trl", "check_verl", "dataset_info_entry",
           "export_jsonl", "to_alpaca", "to_openai", "to_openai_ft", "to_sharegpt", "to_trl", "to_verl", "write_verl"]
