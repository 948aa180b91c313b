"""QueryGen's graph state: the run's input and summary, one task slot, and one chain's steps."""
from __future__ import annotations


import operator
from typing import Annotated, Any, TypedDict






class QueryGenInput(TypedDict, total=False):
    envs: list[str]
    n: int
    seed: int
    max_envs: int
    seeds: list[int]    # instead of n and seed: exactly these chain seeds, one slot each (reproduce given tasks)

class QueryGenState(QueryGenInput, total=False):
    skipped: Annotated[int, operator.add]                 # finished in an earlier run (resumed)
    discarded: Annotated[list[dict[str, Any]], operator.add]
    empty_slots: Annotated[int, operator.add]             # slots whose seeds all gave discarded chains
    not_run: Annotated[int, operator.add]                 # slots skipped because the run was asked to stop
    not_done: Annotated[int, operator.add]                # tasks left for the next run: the model endpoint kept failing
    selector_redrawn: Annotated[int, operator.add]        # chains with an array element drawn again for lack of a selector
    records: Annotated[list[dict[str, Any]], operator.add]
    summary: dict[str, Any]

class SlotState(TypedDict, total=False):
    """One task slot: which seeds it may sample (``process_chain`` samples its own chain, so
    sampling overlaps the other slots' model calls instead of running serially before them)."""

    slot: int
    envs: list[str]
    seed: int
    max_envs: int
    exact_seed: bool        # the slot samples ``seed`` itself, once (the run's input named its seeds)
    chain: dict[str, Any]   # a chain sampled already (tests, the per-step graph)

class ChainState(TypedDict, total=False):
    chain: dict[str, Any]
    failure: str
    prompts: list[dict[str, Any]]
    models: dict[str, str]
    key: str
    turns: list[list[int]]
    queries: list[str]
    tiers: dict[str, str]
    leaks: list[str]
    undetermined: list[str]     # tool.param of gold arguments the user's words do not determine
    rollouts: list[dict[str, Any]]
    unfinished: str         # why the task has no verdict yet (a model endpoint kept failing): not done
    not_done: int
    record: dict[str, Any]
    records: Annotated[list[dict[str, Any]], operator.add]
