"""Imported classes on a large state: what a call, a reset and a new episode cost, as ratios to the
same work on the class itself in the same process.

The state is a class in the EnvFactory layout (pydantic entities in dict attributes, ~1.4 MB as
JSON by default). A call changes one account; an episode call converts only the rows the call
reached (``envs/imports/tracking.py``), and a reset copies back only those rows.

    python -m envfactory.bench.imports [--accounts 6000]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

SOURCE = textwrap.dedent('''
    from typing import Dict, List
    from pydantic import BaseModel


    class Account(BaseModel):
        account_id: str
        owner: str
        email: str
        balance: float
        history: List[str] = []


    class Bank:
        """Accounts and transfers."""

        def __init__(self):
            self.accounts: Dict[str, Account] = {}
            self.transfers: Dict[str, dict] = {}
            self.next_transfer = 1

        def load_scenario(self, scenario: dict) -> None:
            self.accounts = {k: Account(**v) for k, v in scenario.get("accounts", {}).items()}
            self.transfers = dict(scenario.get("transfers", {}))

        def deposit(self, account_id: str, amount: float) -> dict:
            """Deposit money.

            Args:
                account_id: The account.
                amount: How much.
            """
            account = self.accounts[account_id]
            account.balance += amount
            account.history.append(f"deposit {amount}")
            return {"account_id": account_id, "balance": account.balance}

        def get_balance(self, account_id: str) -> float:
            """An account's balance.

            Args:
                account_id: The account.
            """
            return self.accounts[account_id].balance
''')


def _scenario(accounts: int) -> dict:
    return {"accounts": {f"A{i:05d}": {"account_id": f"A{i:05d}", "owner": f"Owner number {i}",
                                       "email": f"owner{i}@example.org", "balance": float(i),
                                       "history": [f"opened {i}", f"deposit {i % 97}", f"fee {i % 13}"]}
                         for i in range(accounts)},
            "transfers": {f"T{i}": {"from": f"A{i:05d}", "to": f"A{(i + 1) % accounts:05d}", "amount": i % 50}
                          for i in range(accounts // 2)}}


def _median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_imports(accounts: int = 6000, repeat: int = 30) -> dict[str, float]:
    import pickle

    from envfactory.envs.imports.importer import import_class
    from envfactory.envs.imports.pyclass import load_state
    from envfactory.envs.imports.source import exec_class_file
    from envfactory.envs.runtime.environment import Environment
    with tempfile.TemporaryDirectory() as tmp:
        src, scenario = Path(tmp) / "bank.py", Path(tmp) / "scenario.json"
        src.write_text(SOURCE)
        scenario.write_text(json.dumps(_scenario(accounts)))
        package = import_class(src, Path(tmp) / "bank", scenario=scenario, explore=False).package
        env = Environment.load(package, trust=True)
        direct = exec_class_file(src).Bank()
        load_state(direct, json.loads(scenario.read_text()))
        ids = iter(range(10**9))
        account = lambda: f"A{next(ids) * 7919 % accounts:05d}"
        direct_call = _median(lambda: direct.deposit(account(), 5.0), repeat * 10)
        direct_read = _median(lambda: direct.get_balance(account()), repeat * 10)
        ep = env.episode()
        call = _median(lambda: ep.call("deposit", {"account_id": account(), "amount": 5.0}), repeat)
        read = _median(lambda: ep.call("get_balance", {"account_id": account()}), repeat)
        hashed = _median(ep.state_hash, repeat)

        def reset_after_calls():
            for _ in range(5):
                ep.call("deposit", {"account_id": account(), "amount": 1.0})
            started = time.perf_counter()
            ep.reset()
            return time.perf_counter() - started
        reset = statistics.median(reset_after_calls() for _ in range(repeat))
        diff = _median(lambda: (ep.call("deposit", {"account_id": account(), "amount": 1.0}), ep.diff()), repeat)
        episode = _median(env.episode, 5)
        blob = pickle.dumps(direct, protocol=pickle.HIGHEST_PROTOCOL)
        copy_baseline = _median(lambda: pickle.loads(blob), 5)
        state_mb = len(env.initial_state) / 1e6
    return {"state_mb": round(state_mb, 2), "rows": accounts + accounts // 2,
            "direct_call_us": direct_call * 1e6, "episode_call_ms": call * 1e3, "call_ratio": call / direct_call,
            "direct_read_us": direct_read * 1e6, "episode_read_ms": read * 1e3, "read_ratio": read / direct_read,
            "state_hash_ms": hashed * 1e3, "call_plus_diff_ms": diff * 1e3,
            "reset_after_5_calls_ms": reset * 1e3, "reset_ratio_to_direct_call": reset / direct_call,
            "new_episode_ms": episode * 1e3, "unpickle_whole_state_ms": copy_baseline * 1e3,
            "new_episode_ratio_to_unpickle": episode / copy_baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    for key, value in bench_imports(args.accounts, args.repeat).items():
        print(f"{key:<36} {value:.4g}" if isinstance(value, float) else f"{key:<36} {value}")


if __name__ == "__main__":
    main()
