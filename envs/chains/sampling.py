"""Topology-aware chain sampling and gold trajectories.

A chain is planned backwards from a target tool: each required parameter is either a value the
user states (grounded in the episode's data) or the output field of a producer tool planned
earlier (recursively, up to a depth cap). The chain may then grow forwards through tools that
consume what it produced. Executing the plan on a fresh episode gives the gold trajectory and the
gold final state. A call refused on its drawn values is drawn again a few times (fresh stated values,
fresh array elements; the episode rolls the refusal back, so it leaves no trace); a chain with a call
that still fails is discarded with its reason. A value taken from one element of a listed array is
drawn only from an element the user can single out (``selectors``), and the gold call keeps how.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from pydantic import BaseModel, PrivateAttr

from envfactory.envs.chains.grounding import Grounder
from envfactory.envs.chains.selectors import Selector, complete, entity_of, selectors_for
from envfactory.envs.runtime.environment import Environment, Episode
from envfactory.envs.chains.toolgraph import ToolGraph


def field_values(output: Any, path: str) -> list[Any]:
    """All values at ``path`` ("books[].book_id") in a tool output."""
    current = [output]
    for part in path.split("."):
        is_array = part.endswith("[]")
        key = part[:-2] if is_array else part
        nxt = []
        for item in current:
            if not key and is_array and isinstance(item, list):  # "[].x": the output itself is the array
                nxt += item
            elif isinstance(item, dict) and key in item:
                value = item[key]
                if is_array:
                    nxt += value if isinstance(value, list) else []
                else:
                    nxt.append(value)
        current = nxt
    return [v for v in current if v is not None]


class Binding(BaseModel):
    """Where an argument's value comes from."""

    source: str                    # "user" (stated, grounded in data) | "call" (an earlier output) | "user_id"
    call: int | None = None        # index of the producing call
    field: str | None = None       # output path in that call
    edge_source: str | None = None # how the edge was found (name_match, foreign_key, llm, ...)


@dataclass
class PlannedCall:
    node: str
    env: str
    tool: str
    bindings: dict[str, Binding] = field(default_factory=dict)


class GoldCall(BaseModel):
    env: str
    tool: str
    arguments: dict[str, Any]
    output: Any
    bindings: dict[str, Binding]
    masked_arguments: list[str] = []
    read_only: bool
    # param -> how the user singles out the listed element its value was taken from
    selectors: dict[str, Selector] = {}


class GoldTrajectory(BaseModel):
    chain_id: str
    seed: int
    envs: list[str]
    targets: list[str]
    calls: list[GoldCall]
    initial_hashes: dict[str, str]
    final_hashes: dict[str, str]
    state_changes: dict[str, dict[str, dict[str, int]]]  # env -> diff summary
    # picks drawn again because the first element drawn had nothing a user could single it out by
    selector_redraws: int = 0
    # The gold change cells per env, from the sampler's own execution (not serialized): the reward's
    # gold reference without replaying the chain again (``data.reward.gold_reference``).
    _gold_cells: dict[str, list[tuple]] | None = PrivateAttr(default=None)


class Discarded(BaseModel):
    chain_id: str
    seed: int
    reason: str
    plan: list[str]


@dataclass
class SamplerConfig:
    min_length: int = 2
    max_length: int = 6
    max_depth: int = 4
    allow_repeat: bool = False
    confirmed_only: bool = True
    max_envs: int = 1
    optional_rate: float = 0.25
    write_target_bias: float = 0.7   # targets are usually writes: they change state, so they verify well
    # A call that fails on its drawn values (a loan that is not active, an empty search) is tried again
    # with fresh deterministic draws of its stated values and array elements before the chain is dropped.
    call_retries: int = 4
    # A plan shorter than ``min_length`` (a target nothing feeds or follows) is re-planned from a new target.
    plan_retries: int = 3
    # A call whose redraws all fail, fed by reads only (an order list, a search), sends the chain back
    # to the latest of those reads for new draws, at most this many times per chain. Off by default:
    # over the catalog it drops the discard rate further (~49% -> ~39%) but costs as much CPU per
    # rescued chain as sampling a new one (bench_sampling), and the CPU per kept chain is what counts.
    backtracks: int = 0
    # Draw array elements only where the user can single the element out (``selectors``); edge
    # confirmation turns it off: whether a value can flow does not depend on the rows listed.
    require_selectors: bool = True


class ChainSampler:
    def __init__(self, tool_graph: ToolGraph, config: SamplerConfig | None = None):
        self.tg = tool_graph
        self.config = config or SamplerConfig()
        self.grounders = {name: Grounder(env) for name, env in tool_graph.envs.items()}
        # Adjacency read once (networkx edge views cost more than the planning itself). Edge data dicts
        # are shared with the graph, so ``confirmed`` is read live (confirm_edges flips it while sampling).
        g = tool_graph.graph
        self._node = dict(g.nodes(data=True))
        self._out = {n: [(v, d) for _, v, d in g.out_edges(n, data=True)] for n in g}
        self._in: dict[tuple[str, str], list[tuple[str, dict]]] = {}
        for n in g:
            for u, _, d in g.in_edges(n, data=True):
                self._in.setdefault((n, d["param"]), []).append((u, d))
        self._env_nodes: dict[str, tuple[list[str], list[str]]] = {}
        for env in {d["env"] for d in self._node.values()}:
            nodes = sorted(n for n, d in self._node.items() if d["env"] == env)
            self._env_nodes[env] = (nodes, [n for n in nodes if not self._node[n]["read_only"]])

    def _usable(self, edge: dict) -> bool:
        return edge["confirmed"] or not self.config.confirmed_only

    # ---------------------------------------------------------------- planning
    def plan(self, rng: random.Random, env_names: list[str]) -> tuple[list[PlannedCall], list[str]]:
        calls: list[PlannedCall] = []
        targets: list[str] = []
        for env_name in env_names:
            nodes, writes = self._env_nodes.get(env_name, ([], []))
            pool = writes if writes and rng.random() < self.config.write_target_bias else nodes
            target = rng.choice(pool)
            targets.append(target)
            self._plan_node(target, rng, calls, depth=0, visiting=set(), envs=set(env_names))
            self._grow_forward(rng, calls, env_name, set(env_names))
        return calls, targets

    def _plan_node(self, node: str, rng: random.Random, calls: list[PlannedCall], depth: int,
                   visiting: set[str], forced: dict[str, Binding] | None = None,
                   envs: set[str] | None = None) -> int | None:
        """Plan ``node`` after the producers of its required parameters (tools of ``envs`` only, the
        chain's environments); returns its call index."""
        data = self._node[node]
        planned = PlannedCall(node, data["env"], data["tool"])
        planned.bindings.update(forced or {})  # first, so the other parameters can avoid their sources
        visiting = visiting | {node}  # a tool being planned cannot also be its own producer
        for pname, info in data["params"].items():
            if pname in planned.bindings or not info["required"]:
                continue
            if info["origin"] == "user":
                planned.bindings[pname] = Binding(source="user")
                continue
            binding = (self._reuse(node, pname, calls, taken=planned.bindings.values())
                       or self._produce(node, pname, rng, calls, depth, visiting, envs))
            planned.bindings[pname] = binding or Binding(source="user_id")
        if len(calls) >= self.config.max_length:
            return None
        calls.append(planned)
        return len(calls) - 1

    def _reuse(self, node: str, pname: str, calls: list[PlannedCall], taken: Iterable[Binding] = ()) -> Binding | None:
        """An earlier call in the chain already outputs this value: refer to it (latest first).

        A single value another parameter of the same call already takes is skipped: two ids of one
        kind (a task and the task it depends on) must not both be the one id a creator returned."""
        busy = {(b.call, b.field) for b in taken if b.source == "call" and "[]" not in (b.field or "")}
        for i in range(len(calls) - 1, -1, -1):
            for v, d in self._out[calls[i].node]:
                if v == node and d["param"] == pname and (i, d["field"]) not in busy and self._usable(d):
                    return Binding(source="call", call=i, field=d["field"], edge_source=d["source"])
        return None

    def _produce(self, node: str, pname: str, rng: random.Random, calls: list[PlannedCall], depth: int,
                 visiting: set[str], envs: set[str] | None = None) -> Binding | None:
        if depth >= self.config.max_depth:
            return None
        used = {c.node for c in calls}
        options = [(u, d) for u, d in self._in.get((node, pname), ())
                   if self._usable(d) and u not in visiting and (self.config.allow_repeat or u not in used)
                   and (envs is None or self._node[u]["env"] in envs)]
        if not options:
            return None
        options.sort(key=lambda o: (o[0], o[1]["field"]))
        # Tools that create the value (it is in their output but not their input, like an order id
        # from place_order) make fresh, usable entities; prefer them most of the time.
        creators = [o for o in options if pname not in self._node[o[0]]["params"]]
        pool = creators if creators and rng.random() < 0.75 else options
        producer, edge = rng.choice(pool)
        index = self._plan_node(producer, rng, calls, depth + 1, visiting, envs=envs)
        if index is None:
            return None
        return Binding(source="call", call=index, field=edge["field"], edge_source=edge["source"])

    def _grow_forward(self, rng: random.Random, calls: list[PlannedCall], env_name: str, envs: set[str]) -> None:
        want = rng.randint(self.config.min_length, self.config.max_length)
        while len(calls) < want:
            used = {c.node for c in calls}
            successors = sorted({v for c in calls for v, d in self._out[c.node]
                                 if v not in used and self._node[v]["env"] == env_name and self._usable(d)})
            if not successors:
                return
            before = len(calls)
            self._plan_node(rng.choice(successors), rng, calls, depth=0, visiting=set(), envs=envs)
            if len(calls) == before:
                return

    # ---------------------------------------------------------------- execution
    def sample(self, seed: int, env_names: list[str] | None = None) -> GoldTrajectory | Discarded:
        """Plan and execute one chain; deterministic for ``seed``."""
        rng = random.Random(seed)
        names = sorted(self.tg.envs)
        if env_names is None:
            k = min(self.config.max_envs, len(names))
            env_names = sorted(rng.sample(names, rng.randint(1, k)))
        calls, targets = self.plan(rng, env_names)
        for _ in range(self.config.plan_retries):
            if len(calls) >= self.config.min_length:
                break
            calls, targets = self.plan(rng, env_names)  # the same rng goes on: still one chain per seed
        chain_id = f"{'+'.join(env_names)}-{seed}"
        plan = [c.node for c in calls]
        if len(calls) < self.config.min_length:
            return Discarded(chain_id=chain_id, seed=seed, reason=f"chain too short ({len(calls)} calls)", plan=plan)
        return self.execute(calls, targets, env_names, seed, chain_id)

    def execute(self, calls: list[PlannedCall], targets: list[str], env_names: list[str], seed: int,
                chain_id: str) -> GoldTrajectory | Discarded:
        rng = random.Random(f"exec:{seed}")
        envs: dict[str, Environment] = {n: self.tg.envs[n] for n in env_names}
        episodes = {n: e.episode() for n, e in envs.items()}
        gold: list[GoldCall] = []
        picks: dict[tuple[int, str], int] = {}  # (call, array path) -> element index, shared across fields
        needed = _needed_fields(calls)
        changed: set[str] = set()  # environments a write may have changed (grounding caches the initial state only)
        specs = [envs[c.env].manifest.tool(c.tool) for c in calls]
        picks_before: list[dict] = []  # picks as each call found them (a backtrack restores them)
        first_attempt = [0] * len(calls)  # a call run again after a backtrack starts at new draws
        backtracks, first_failure = 0, None
        redraws = [0]
        try:
            i = 0
            while i < len(calls):
                planned, spec = calls[i], specs[i]
                del picks_before[i:]
                picks_before.append(dict(picks))
                outcome = self._run_call(i, planned, gold, picks, episodes[planned.env], rng, seed,
                                         needed.get(i, ()), spec.read_only, planned.env not in changed,
                                         first_attempt[i], redraws)
                if isinstance(outcome, str):
                    first_failure = first_failure or outcome
                    j = self._backtrack_target(i, planned, specs)
                    if j is None or backtracks >= self.config.backtracks:
                        return Discarded(chain_id=chain_id, seed=seed, plan=[c.node for c in calls], reason=first_failure)
                    # The values came from reads (no state changed since call j): ask call j again,
                    # with new draws, and go on from there.
                    backtracks += 1
                    for k in range(j, i + 1):
                        first_attempt[k] += 1 + max(self.config.call_retries, 0)
                    del gold[j:]
                    picks.clear()
                    picks.update(picks_before[j])
                    i = j
                    continue
                args, output, selectors = outcome
                if not spec.read_only:
                    changed.add(planned.env)
                bindings = {p: planned.bindings.get(p, Binding(source="user")) for p in args}
                gold.append(GoldCall(env=planned.env, tool=planned.tool, arguments=args, output=output,
                                     bindings=bindings, masked_arguments=[m for m in spec.maskable_arguments if m in args],
                                     read_only=spec.read_only, selectors=selectors))
                i += 1
            diffs = {n: ep.diff() for n, ep in episodes.items()}
            trajectory = GoldTrajectory(
                chain_id=chain_id, seed=seed, envs=env_names, targets=targets, calls=gold,
                initial_hashes={n: e.initial_hash for n, e in envs.items()},
                final_hashes={n: ep.state_hash() for n, ep in episodes.items()},
                state_changes={n: d.summary() for n, d in diffs.items()}, selector_redraws=redraws[0])
            trajectory._gold_cells = {n: d.cells() for n, d in diffs.items()}
            return trajectory
        finally:
            for ep in episodes.values():
                ep.close()

    @staticmethod
    def _backtrack_target(i: int, planned: PlannedCall, specs: list) -> int | None:
        """The latest call feeding call ``i``, when every call from it to ``i`` is a read (asking it
        again changes no state), else None."""
        producers = [b.call for b in planned.bindings.values() if b.source == "call" and b.call is not None]
        if not producers:
            return None
        j = max(producers)
        return j if all(specs[k].read_only for k in range(j, i)) else None

    def _run_call(self, i: int, planned: PlannedCall, gold: list[GoldCall], picks: dict, ep: Episode,
                  rng: random.Random, seed: int, needs: Iterable[str], read_only: bool,
                  initial_state: bool, first_attempt: int = 0,
                  redraws: list[int] | None = None) -> tuple[dict[str, Any], Any, dict[str, Selector]] | str:
        """Execute call ``i``; returns its arguments and output, or why the chain is discarded.

        The first attempt draws exactly as a sampler without retries does. A refused attempt (domain
        error, rejected arguments), or a read whose output lacks a field later calls take, is drawn
        again: new stated values and new elements of arrays this call is the first to take from
        (elements earlier calls took stay shared, so a book's id and its title still match). A
        refused call changes nothing (the episode rolls it back) and never reaches the gold calls."""
        frozen = set(picks)
        tried: dict[tuple[int, str], set[int]] = {}  # array -> element indexes already tried
        seen: set[str] = set()                       # argument sets already run (repr)
        first_reason: str | None = None
        fallback: tuple[dict[str, Any], Any, dict, dict] | None = None
        ran = 0
        for attempt in range(first_attempt, first_attempt + 1 + max(self.config.call_retries, 0)):
            draw = rng if attempt == 0 else random.Random(f"exec:{seed}:{i}:{attempt}")
            trial = picks if attempt == 0 else {k: v for k, v in picks.items() if k in frozen}
            fixed, selectors, reason, hopeless = self._bound_values(planned, gold, trial, draw, tried, redraws,
                                                                     self.config.require_selectors)
            for key in trial.keys() - frozen:
                tried.setdefault(key, set()).add(trial[key])
            if reason is not None:
                first_reason = first_reason or reason
                if hopeless:
                    break
                continue
            grounding_seed = seed * 1000 + i if attempt == 0 else f"{seed * 1000 + i}/{attempt}"
            args = self.grounders[planned.env].arguments(planned.tool, ep, seed=grounding_seed, fixed=fixed,
                                                         optional_rate=self.config.optional_rate,
                                                         initial_state=initial_state)
            if args is None:
                first_reason = first_reason or f"no grounded value for a required argument of {planned.tool}"
                break  # the data holds no value at all: new draws find none either
            key = repr(sorted(args.items()))
            if key in seen:
                continue  # the same call again would fail the same way
            seen.add(key)
            ran += 1
            result = ep.call(planned.tool, args)
            if not result.ok:
                first_reason = first_reason or f"call {i + 1} {planned.tool} failed [{result.error_kind}]: {result.error}"
                if result.error_kind not in _RETRYABLE:
                    break  # an environment bug or a runtime refusal: new values would hide it
                continue
            if read_only and any(not field_values(result.output, f) for f in needs):
                fallback = fallback or (args, result.output, trial, selectors)
                continue  # an empty search: ask again (a read changed nothing)
            picks.update(trial)
            return args, result.output, selectors
        if fallback is not None:  # later calls report what the read did not return
            picks.update(fallback[2])
            return fallback[0], fallback[1], fallback[3]
        reason = first_reason or f"call {i + 1} {planned.tool}: no new values to try"
        return reason + (f" ({ran} attempts)" if ran > 1 else "")

    @staticmethod
    def _bound_values(planned: PlannedCall, gold: list[GoldCall], picks: dict, rng: random.Random,
                      tried: dict, redraws: list[int] | None = None, need_selectors: bool = True
                      ) -> tuple[dict[str, Any], dict[str, Selector], str | None, bool]:
        """Values of the call-bound arguments and the selectors of those taken from arrays; with the
        reason and whether redrawing cannot help when one is missing."""
        fixed: dict[str, Any] = {}
        selectors: dict[str, Selector] = {}
        given: dict[tuple[int, str], list[Any]] = {}  # (call, path) -> values this call already takes
        for pname, b in planned.bindings.items():
            if b.source != "call":
                continue
            value, selector, unsingled = _pick(gold[b.call].output, b.field, picks, b.call, rng,
                                               avoid=given.get((b.call, b.field), ()), tried=tried, redraws=redraws,
                                               need_selector=need_selectors)
            given.setdefault((b.call, b.field), []).append(value)
            if unsingled:
                # the listed output stays what it is: no new draw can single an element out
                return fixed, selectors, (f"no selector: call {b.call + 1} ({gold[b.call].tool}) lists {unsingled} "
                                          f"{entity_of(b.field.rpartition('[].')[0])} elements and nothing a user "
                                          f"could say singles one out for {planned.tool}.{pname}"), True
            if value is None:
                reason = (f"call {b.call + 1} ({gold[b.call].tool}) returned nothing at {b.field} "
                          f"for {planned.tool}.{pname}")
                return fixed, selectors, reason, not field_values(gold[b.call].output, b.field)
            fixed[pname] = value
            if selector is not None:
                selectors[pname] = selector
        return fixed, selectors, None, False


_RETRYABLE = {"domain", "invalid_arguments"}


def _needed_fields(calls: list[PlannedCall]) -> dict[int, set[str]]:
    """Call index -> the output paths later calls of the plan take values from."""
    needed: dict[int, set[str]] = {}
    for planned in calls:
        for b in planned.bindings.values():
            if b.source == "call" and b.call is not None and b.field:
                needed.setdefault(b.call, set()).add(b.field)
    return needed


def _first(values: list[Any]) -> Any:
    return values[0] if values else None


def _pick(output: Any, path: str, picks: dict, call: int, rng: random.Random, avoid: Iterable[Any] = (),
          tried: dict | None = None, redraws: list[int] | None = None,
          need_selector: bool = True) -> tuple[Any, Selector | None, int]:
    """A value at ``path``, the selector of the array element it comes from, and, when no element
    of the array can be singled out by anything a user could say, how many were listed (else 0).

    Fields under the same array take the same element (a book's id and its title). Only elements
    with a selector are drawn: one drawn without is drawn again among those with one (``redraws``
    counts it). Values in ``avoid`` (already given to another parameter of the same call, as when a
    task and the task it depends on both come from ``tasks[].task_id``) are skipped while the array
    holds another. A new element is drawn among those not in ``tried`` (earlier attempts) while any is left.
    ``need_selector=False`` draws among all elements (the selector is None where there is none)."""
    if "[]" not in path:
        return _first(field_values(output, path)), None, 0
    array_path, _, rest = path.rpartition("[].")
    items = field_values(output, array_path + "[]") if array_path else []
    if not items:
        return None, None, 0
    found = selectors_for(items)
    values = [_first(field_values(item, rest)) for item in items]
    selectable = ([k for k, sel in enumerate(found) if sel is not None and values[k] is not None] if need_selector
                  else list(range(len(items))))
    if not selectable:
        return None, None, len(items)
    key = (call, array_path)
    if key not in picks:
        done = (tried or {}).get(key)
        fresh = [k for k in range(len(items)) if k not in done] if done else None
        k = rng.choice(fresh) if fresh else rng.randrange(len(items))
        if k not in selectable:
            k = rng.choice([j for j in selectable if not done or j not in done] or selectable)
            if redraws is not None:
                redraws[0] += 1
        picks[key] = k
    k = picks[key] % len(items)
    avoid = list(avoid)
    if values[k] is not None and values[k] in avoid:
        others = [j for j in selectable if values[j] is not None and values[j] not in avoid]
        k = rng.choice(others) if others else k
    if found[k] is None:  # taken for another field, which could name it; this one cannot
        return (values[k], None, 0) if not need_selector else (None, None, len(items))
    return values[k], complete(found[k], items, call, array_path + "[]"), 0


def sample_many(sampler: ChainSampler, n: int, seed: int = 0, max_tries: int | None = None,
                progress: bool = False) -> tuple[list[GoldTrajectory], list[Discarded]]:
    """Up to ``n`` gold trajectories from consecutive seeds; discarded chains are kept with reasons."""
    from tqdm import tqdm

    kept, dropped = [], []
    max_tries = max_tries or n * 5
    bar = tqdm(total=n, desc="sampling chains", disable=not progress, unit="chain")
    s = seed
    while len(kept) < n and s < seed + max_tries:
        out = sampler.sample(s)
        (kept if isinstance(out, GoldTrajectory) else dropped).append(out)
        if isinstance(out, GoldTrajectory):
            bar.update(1)
        s += 1
    bar.close()
    return kept, dropped


def chain_statistics(tg: ToolGraph, kept: Iterable[GoldTrajectory], dropped: Iterable[Discarded] = ()) -> dict[str, Any]:
    kept, dropped = list(kept), list(dropped)
    tools_seen = Counter(f"{c.env}.{c.tool}" if len(tg.envs) > 1 else c.tool for t in kept for c in t.calls)
    edges_used = set()
    for t in kept:
        for c in t.calls:
            for p, b in c.bindings.items():
                if b.source == "call":
                    producer = t.calls[b.call]
                    edges_used.add((producer.tool, c.tool, p))
    confirmed = {(tg.graph.nodes[u]["tool"], tg.graph.nodes[v]["tool"], d["param"]) for u, v, d in tg.edges(True)}
    lengths = Counter(len(t.calls) for t in kept)
    reads = sum(c.read_only for t in kept for c in t.calls)
    total_calls = sum(len(t.calls) for t in kept)
    reasons = Counter(d.reason.split(":")[0] for d in dropped)
    return {"kept": len(kept), "discarded": len(dropped),
            "tool_coverage": len(tools_seen) / max(tg.graph.number_of_nodes(), 1),
            "edge_coverage": len(edges_used & confirmed) / max(len(confirmed), 1),
            "length_distribution": dict(sorted(lengths.items())),
            "mean_length": total_calls / max(len(kept), 1),
            "read_share": reads / max(total_calls, 1),
            "dependent_bindings": sum(b.source == "call" for t in kept for c in t.calls for b in c.bindings.values()),
            "discard_reasons": dict(reasons.most_common(8))}
