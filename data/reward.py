"""Verification and reward: one library used by QueryGen, the exports and the trainers.

R = clip(tau * T + (1 - tau) * S - L - F, 0, 1)

- T, trajectory score: F1 over calls matched by name and arguments, order-free (a maximum
  bipartite matching, so duplicates count), masked arguments may take any value, numbers are
  compared with a tolerance.
- S, state score: the rollout's change set against the gold change set, both from the same
  initial state (cells: updated columns, deleted rows, inserted rows by content without their
  generated id); 1 when equal, otherwise F1 over cells. Volatile columns never count.
  When the gold changes nothing (a turn that only reads), an empty change set carries no
  information: a rollout that does nothing would earn S = 1. There the state term is the answer
  score A instead, earned only by a rollout that wrote nothing either: A is the caller's score of
  the final answer when it has one (``answer``), else T (the reads that fetch the answer).
  Doing nothing therefore scores 0 on every turn, reads included.
- L, length penalty: 0.05 per predicted call beyond the gold count plus slack, capped at 0.5.
- F, format penalty: 0.05 per malformed call (unparseable, unknown tool, schema-invalid), capped at 0.5.

Infrastructure failures (the environment crashed, the gold replay failed) give *no score*
(``score is None``) so the sample is dropped rather than trained on as a 0.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import networkx as nx
from pydantic import BaseModel

from envfactory.envs.runtime.environment import Environment, Episode
from envfactory.envs.runtime.state import Snapshot, StateDiff


class Call(BaseModel):
    """A tool call as verification sees it. ``masked`` arguments may take any value."""

    name: str
    arguments: dict[str, Any] = {}
    masked: list[str] = []
    env: str | None = None


class RewardConfig(BaseModel):
    tau: float = 0.5                 # weight of the trajectory score
    length_slack: int = 0            # extra calls allowed before the length penalty (1 for discovery reads)
    length_step: float = 0.05
    length_cap: float = 0.5
    format_step: float = 0.05
    format_cap: float = 0.5
    rel_tol: float = 1e-6
    casefold_strings: bool = False   # compare enum-like strings case-insensitively


class RewardResult(BaseModel):
    score: float | None              # None: infrastructure failure, drop the sample
    trajectory: float | None = None
    state: float | None = None
    length_penalty: float = 0.0
    format_penalty: float = 0.0
    matched_calls: int = 0
    predicted_calls: int = 0
    gold_calls: int = 0
    state_equal: bool | None = None
    read_only_gold: bool = False     # the gold changed nothing: ``state`` is the answer term (see the module doc)
    failure: str | None = None       # why there is no score

    def components(self) -> dict[str, Any]:
        """Flat numbers for logs (verl's reward_extra_info)."""
        return self.model_dump()


# ---------------------------------------------------------------- trajectory score

def _values_equal(gold: Any, pred: Any, cfg: RewardConfig) -> bool:
    if isinstance(gold, bool) or isinstance(pred, bool):
        return gold is pred if isinstance(gold, bool) and isinstance(pred, bool) else False
    if isinstance(gold, (int, float)) and isinstance(pred, (int, float)):
        return math.isclose(gold, pred, rel_tol=cfg.rel_tol, abs_tol=1e-9)
    if isinstance(gold, str) and isinstance(pred, str):
        return gold.strip().casefold() == pred.strip().casefold() if cfg.casefold_strings else gold == pred
    if isinstance(gold, list) and isinstance(pred, list):
        return len(gold) == len(pred) and all(_values_equal(g, p, cfg) for g, p in zip(gold, pred))
    if isinstance(gold, dict) and isinstance(pred, dict):
        return gold.keys() == pred.keys() and all(_values_equal(gold[k], pred[k], cfg) for k in gold)
    return gold == pred


def calls_match(gold: Call, pred: Call, cfg: RewardConfig, defaults: dict[str, dict[str, Any]] | None = None) -> bool:
    """Same tool; every unmasked gold argument present and equal; extra predicted arguments only
    when they equal the schema default (so stating a default is not punished)."""
    if gold.name != pred.name or (gold.env and pred.env and gold.env != pred.env):
        return False
    masked = set(gold.masked)
    for key, value in gold.arguments.items():
        if key in masked:
            continue
        if key not in pred.arguments or not _values_equal(value, pred.arguments[key], cfg):
            return False
    tool_defaults = (defaults or {}).get(gold.name, {})
    for key, value in pred.arguments.items():
        if key not in gold.arguments and key not in masked:
            if key not in tool_defaults or not _values_equal(tool_defaults[key], value, cfg):
                return False
    return True


_MISSING = object()


def _exact_signature(arguments: dict[str, Any], keys: tuple[str, ...], cfg: RewardConfig) -> tuple | None:
    """A hashable form of the arguments at ``keys``, or None when a float makes tolerance matter."""
    sig = []
    for k in keys:
        v = arguments.get(k, _MISSING)
        if isinstance(v, float) or isinstance(v, (list, dict)):
            return None
        if isinstance(v, str) and cfg.casefold_strings:
            v = v.strip().casefold()
        sig.append((type(v) is bool, v) if v is not _MISSING else ("missing",))
    return tuple(sig)


def trajectory_score(gold: Sequence[Call], pred: Sequence[Call], cfg: RewardConfig | None = None,
                     defaults: dict[str, dict[str, Any]] | None = None) -> tuple[float, int]:
    """F1 over calls with a maximum bipartite matching; returns (F1, matched count)."""
    cfg = cfg or RewardConfig()
    if not gold and not pred:
        return 1.0, 0            # correctly did nothing
    if not gold or not pred:
        return 0.0, 0
    edges: list[tuple[int, int]] = []
    pred_sigs: dict[tuple, tuple | None] = {}
    for i, gc in enumerate(gold):
        keys = tuple(sorted(k for k in gc.arguments if k not in gc.masked))
        exact = _exact_signature(gc.arguments, keys, cfg)
        for j, pc in enumerate(pred):
            if pc.name != gc.name:
                continue
            # Cheap pre-filter: when no float is involved, differing canonical signatures cannot match.
            if exact is not None:
                if (j, keys) not in pred_sigs:
                    pred_sigs[(j, keys)] = _exact_signature(pc.arguments, keys, cfg)
                other = pred_sigs[(j, keys)]
                if other is not None and other != exact:
                    continue
            if calls_match(gc, pc, cfg, defaults):
                edges.append((i, j))
    if not edges:
        return 0.0, 0
    tp = _max_matching_size(edges)
    precision, recall = tp / len(pred), tp / len(gold)
    return (2 * precision * recall / (precision + recall) if tp else 0.0), tp


def _max_matching_size(edges: list[tuple[int, int]]) -> int:
    """Size of a maximum matching of the bipartite graph (gold i, predicted j) ``edges``.

    The usual rollout matches each call to at most one candidate on either side: the edges are
    then disjoint and all of them form the matching. Otherwise networkx's Hopcroft-Karp decides.
    """
    golds, preds = [i for i, _ in edges], [j for _, j in edges]
    if len(set(golds)) == len(edges) and len(set(preds)) == len(edges):
        return len(edges)
    g = nx.Graph()
    left = [("g", i) for i in set(golds)]
    g.add_nodes_from(left, bipartite=0)
    g.add_nodes_from((("p", j) for j in set(preds)), bipartite=1)
    g.add_edges_from((("g", i), ("p", j)) for i, j in edges)
    matching = nx.bipartite.hopcroft_karp_matching(g, top_nodes=left)
    return sum(1 for node in left if node in matching)


# ---------------------------------------------------------------- state score

def state_score(gold: StateDiff | list[tuple], pred: StateDiff | list[tuple]) -> tuple[float, bool]:
    """F1 over changed cells (multisets); (1.0, True) when the change sets are equal."""
    g = Counter(gold.cells() if isinstance(gold, StateDiff) else gold)
    p = Counter(pred.cells() if isinstance(pred, StateDiff) else pred)
    if g == p:
        return 1.0, True
    if not g or not p:
        return 0.0, False
    tp = sum((g & p).values())
    if tp == 0:
        return 0.0, False
    precision, recall = tp / sum(p.values()), tp / sum(g.values())
    return 2 * precision * recall / (precision + recall), False


# ---------------------------------------------------------------- gold tasks

@dataclass
class GoldReference:
    """A task's gold, replayed once on its initial state and cached: calls and change cells per env."""

    calls: list[Call]
    cells: dict[str, list[tuple]]              # env -> gold change cells
    final_hashes: dict[str, str]
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)


class GoldReplayError(RuntimeError):
    """The gold calls no longer execute on the initial state: an infrastructure failure, not the policy's."""


def route_call(episodes: dict[str, Episode], call: Call) -> str | None:
    """The environment a gold call runs in: its own ``env``, else the one whose tools have its name
    (names are unique within a task's tool set), else the only one there is."""
    if call.env:
        return call.env
    owner = next((name for name, ep in episodes.items() if call.name in getattr(ep.env, "tools", {})), None)
    return owner or (next(iter(episodes)) if len(episodes) == 1 else None)


def run_calls(episodes: dict[str, Episode], calls: Sequence[Call], what: str = "gold call") -> None:
    """Run ``calls`` in order on open episodes; the first call that does not execute raises
    GoldReplayError naming it (``what`` says which calls: "gold call", "earlier-turn gold call")."""
    for i, call in enumerate(calls):
        env_name = route_call(episodes, call)
        if env_name not in episodes:
            raise GoldReplayError(f"{what} {i + 1} ({call.name}) names environment {env_name!r}, which was not given "
                                  f"(have {sorted(episodes)})")
        res = episodes[env_name].call(call.name, call.arguments)
        if not res.ok:
            raise GoldReplayError(f"{what} {i + 1} {call.name} failed on replay: {res.error}")


def replay_calls(envs: dict[str, Environment], calls: Sequence[Call],
                 initial_states: dict[str, bytes | Snapshot] | None = None, what: str = "gold call") -> dict[str, Episode]:
    """Fresh episodes (at ``initial_states`` where given) with ``calls`` replayed in order; the caller
    closes them. The one gold-call replay every export and reward uses; raises GoldReplayError."""
    initial_states = initial_states or {}
    episodes = {name: env.episode(state=initial_states.get(name)) for name, env in envs.items()}
    try:
        run_calls(episodes, calls, what)
    except BaseException:
        for ep in episodes.values():
            ep.close()
        raise
    return episodes


def replay_gold(envs: dict[str, Environment], calls: Sequence[Call],
                initial_states: dict[str, bytes | Snapshot] | None = None) -> GoldReference:
    """Replay the gold calls on fresh episodes (tau2-style): the gold final state is recomputed,
    never taken from a stored snapshot."""
    episodes = replay_calls(envs, calls, initial_states)
    try:
        return GoldReference(list(calls), {n: ep.diff().cells() for n, ep in episodes.items()},
                             {n: ep.state_hash() for n, ep in episodes.items()}, argument_defaults(envs))
    finally:
        for ep in episodes.values():
            ep.close()


def argument_defaults(envs: dict[str, Environment]) -> dict[str, dict[str, Any]]:
    """Schema defaults per tool: a call that omits such an argument matches one that states it."""
    return {spec.name: {k: v["default"] for k, v in spec.input_schema.get("properties", {}).items() if "default" in v}
            for env in envs.values() for spec in env.tool_specs}


def gold_from_execution(envs: dict[str, Environment], calls: Sequence[Call], cells: dict[str, list[tuple]],
                        final_hashes: dict[str, str]) -> GoldReference:
    """The gold reference from an execution of the gold calls on the initial state that already
    happened in this process (the chain sampler's), instead of replaying them once more."""
    return GoldReference(list(calls), {n: list(cells.get(n, [])) for n in envs}, dict(final_hashes),
                         argument_defaults(envs))


def composite_reward(gold: GoldReference, pred_calls: Sequence[Call], pred_cells: dict[str, list[tuple]],
                     n_malformed: int = 0, cfg: RewardConfig | None = None, answer: float | None = None) -> RewardResult:
    """R = clip(tau*T + (1-tau)*S - L - F); ``answer`` (0..1) scores the final answer of a turn whose gold
    only reads (see the module doc), T stands in for it when None."""
    cfg = cfg or RewardConfig()
    t, tp = trajectory_score(gold.calls, pred_calls, cfg, gold.defaults)
    envs = sorted(set(gold.cells) | set(pred_cells))
    gold_all = [(e, *c) for e in envs for c in gold.cells.get(e, [])]
    pred_all = [(e, *c) for e in envs for c in pred_cells.get(e, [])]
    s, equal = state_score(gold_all, pred_all)
    read_only = not gold_all
    if read_only:  # nothing to compare states on: the state term is the answer, and only without writes
        s = (t if answer is None else min(max(answer, 0.0), 1.0)) if equal else 0.0
    n_pred = len(pred_calls) + n_malformed
    length = min(cfg.length_step * max(0, n_pred - len(gold.calls) - cfg.length_slack), cfg.length_cap)
    fmt = min(cfg.format_step * n_malformed, cfg.format_cap)
    score = min(max(cfg.tau * t + (1 - cfg.tau) * s - length - fmt, 0.0), 1.0)
    return RewardResult(score=score, trajectory=t, state=s, length_penalty=length, format_penalty=fmt,
                        matched_calls=tp, predicted_calls=n_pred, gold_calls=len(gold.calls), state_equal=equal,
                        read_only_gold=read_only)


def score_episodes(gold: GoldReference, episodes: dict[str, Episode], pred_calls: Sequence[Call] | None = None,
                   n_malformed: int = 0, cfg: RewardConfig | None = None) -> RewardResult:
    """Score live rollout episodes (one per environment, all started from the task's initial state).

    Predicted calls default to the episodes' own call logs: the calls the agent loop parsed and
    executed, never a regex over decoded text (which would also see tool outputs).
    """
    try:
        if pred_calls is None:
            pred_calls = []
            for name, ep in episodes.items():
                for rec in ep.calls:
                    if rec.error_kind in ("unknown_tool", "invalid_arguments"):
                        n_malformed += 1  # counted once, as a format error (and in the call count)
                    else:
                        pred_calls.append(Call(name=rec.tool, arguments=rec.arguments, env=name))
        cells = {name: ep.diff().cells() for name, ep in episodes.items()}
        if any(rec.error_kind == "internal" for ep in episodes.values() for rec in ep.calls):
            return RewardResult(score=None, failure="an environment tool crashed during the rollout")
    except Exception as exc:  # the environment itself broke: no score, drop the sample
        return RewardResult(score=None, failure=f"environment failure while scoring: {type(exc).__name__}: {exc}")
    return composite_reward(gold, pred_calls, cells, n_malformed, cfg)


def reward_for_rollout(envs: dict[str, Environment], gold_calls: Sequence[Call], rollout: dict[str, Episode],
                       initial_states: dict[str, bytes | Snapshot] | None = None, pred_calls: Sequence[Call] | None = None,
                       n_malformed: int = 0, cfg: RewardConfig | None = None) -> RewardResult:
    """One-shot convenience: replay the gold, then score the rollout. Replay failures give no score."""
    try:
        gold = replay_gold(envs, gold_calls, initial_states)
    except GoldReplayError as exc:
        return RewardResult(score=None, failure=str(exc))
    return score_episodes(gold, rollout, pred_calls, n_malformed, cfg)


def gold_calls_from_trajectory(trajectory) -> list[Call]:
    """Gold calls (with masks) from a sampled GoldTrajectory."""
    return [Call(name=c.tool, arguments=c.arguments, masked=c.masked_arguments, env=c.env) for c in trajectory.calls]
