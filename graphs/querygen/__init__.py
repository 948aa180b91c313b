"""QueryGen graph: sample chains -> split into user turns -> generate queries -> calibrate ->
roll out k times -> verify -> accept or reject, fanned out over chains with ``Send`` in waves of
``slots_per_wave``. The run's state holds counts and record keys; ``run_records(output, ctx)`` reads
the records themselves.

The per-chain work is five steps (``make_chain_graph`` is them as a graph of their own, one node
per step, for Studio) which the outer graph's ``process_chain`` node runs for each sampled chain;
``config["max_concurrency"]`` caps parallel chains. Models, prompt versions, limits and the
record store come through the Context, so Studio, notebooks, the CLI and tests share this graph.
With no model configured every step runs its offline tier and says so in the record's provenance.

A step that waits on a model is a generator: it yields what it waits for (``_Ask``, a structured
model call; ``_Await``, a rollout coroutine) and gets the answer back. ``_drive`` answers in the
calling thread (the graph's nodes, threads mode); ``_adrive`` awaits on an event loop (worker
processes, many slots per loop). One body per step serves both.

Modules (the LangGraph template split): ``context`` (QueryGenContext), ``state`` (graph state),
``steps`` (the five agent steps), ``driver`` (runs a step body), ``slots`` (one task slot),
``chain`` (the five steps as a graph), ``nodes`` (the run's own nodes), ``graph`` (the run graph), ``resources`` (what slots share in
a process), ``workers`` (the worker-process pool). Imports flow one way:
context, state <- resources <- driver <- steps <- chain, slots <- nodes <- graph; ``workers`` imports
``resources`` and is imported by ``nodes``; so is ``ray_executor`` (slots on Ray async actors,
``QueryGenContext.executor = "ray"``), which imports ``slots`` inside its actors.
"""
from envfactory.envs.runtime.cache import load_env  # querygen.load_env stays importable
from envfactory.graphs.querygen.context import DEFAULT_SYSTEM_PROMPT, ContextRuntime, QueryGenContext
from envfactory.graphs.querygen.chain import make_chain_graph
from envfactory.graphs.querygen.graph import make_graph
from envfactory.graphs.querygen.resources import RECENT_RECORDS, run_records
from envfactory.graphs.querygen.slots import SEEDS_PER_SLOT, arun_slot, run_slot, slot_chains, slot_seeds
from envfactory.graphs.querygen.state import ChainState, QueryGenInput, QueryGenState, SlotState
from envfactory.graphs.querygen.steps import calibrate, generate_queries, roll_out, split_turns, task_key, verify

__all__ = ["ChainState", "ContextRuntime", "DEFAULT_SYSTEM_PROMPT", "QueryGenContext", "QueryGenInput", "QueryGenState",
           "RECENT_RECORDS", "SEEDS_PER_SLOT", "SlotState", "arun_slot", "calibrate", "generate_queries", "load_env", "make_chain_graph",
           "make_graph", "roll_out", "run_records", "run_slot", "slot_chains", "slot_seeds", "split_turns", "task_key", "verify"]
