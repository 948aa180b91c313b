"""QueryGen's graph state: the run's input and summary, one task slot, and one chain's steps."""
from __future__ import annotations


import operator
from typing import Annotated, Any

from typing_extensions import TypedDict  # not typing.TypedDict: pydantic (Studio's schemas) needs this one on 3.11






class QueryGenInput(TypedDict, total=False):
    envs: list[str]
    n: int
    seed: int
    max_envs: int
    seeds: list[int]    # instead of n and seed: exactly these chain seeds, one slot each (reproduce given tasks)

def add_counts(a: dict[str, float] | None, b: dict[str, float] | None) -> dict[str, float]:
    """Reducer of ``verdicts``: counts added key by key."""
    out = dict(a or {})
    for key, value in (b or {}).items():
        out[key] = out.get(key, 0) + value
    return out


class QueryGenState(QueryGenInput, total=False):
    """The run's state holds counts and record keys, never record bodies (those go to the record
    store, or, without one, to a bounded in-memory buffer: ``querygen.run_records``), so a run's
    memory does not grow with its number of tasks."""

    skipped: Annotated[int, operator.add]                 # finished in an earlier run (resumed)
    discarded_chains: Annotated[int, operator.add]        # sampled chains dropped (a slot tries up to 8 seeds)
    empty_slots: Annotated[int, operator.add]             # slots whose seeds all gave discarded chains
    not_run: Annotated[int, operator.add]                 # slots skipped because the run was asked to stop
    not_done: Annotated[int, operator.add]                # tasks left for the next run: the model endpoint kept failing
    record_keys: Annotated[list[str], operator.add]       # the records this run made, by key
    verdicts: Annotated[dict[str, float], add_counts]     # accepted, rejected, "reason:<r>", pass-rate sum and count
    next_slot: int                                        # the first slot of the wave to send
    wave_end: int                                         # one past its last slot
    selector_redrawn: Annotated[int, operator.add]        # chains with an array element drawn again for lack of a selector
    selector_dropped: Annotated[int, operator.add]        # sampled chains dropped because no element could be singled out
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
