"""Exporters from the canonical trajectory record to what trainers load, each with a checker that
applies the format's own rules (so a file that would be silently skipped by a trainer is caught here)."""
from .chat import check_openai, to_openai
from .llamafactory import check_alpaca, check_sharegpt, dataset_info_entry, to_alpaca, to_sharegpt
from .trl_env import check_trl, to_trl
from .verl import check_verl, to_verl, write_verl

FORMATS = {"openai": (to_openai, check_openai), "sharegpt": (to_sharegpt, check_sharegpt), "alpaca": (to_alpaca, check_alpaca),
           "trl": (to_trl, check_trl)}

# verl is not in FORMATS: it writes parquet splits and config files, not one JSONL (see write_verl)
__all__ = ["FORMATS", "check_alpaca", "check_openai", "check_sharegpt", "check_trl", "check_verl", "dataset_info_entry",
           "to_alpaca", "to_openai", "to_sharegpt", "to_trl", "to_verl", "write_verl"]
