"""Topology-aware chain sampling and gold trajectories.

A chain is planned backwards from a target tool: each required parameter is either a value the
user states (grounded in the episode's data) or the output field of a producer tool planned
earlier (recursively, up to a depth cap). The chain may then grow forwards through tools that
consume what it produced. Executing the plan on a fresh episode gives the gold trajectory and the
gold final state; a chain with any failing call is discarded with its reason.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from pydantic import BaseModel, PrivateAttr

from .grounding import Grounder
from .runtime import Environment
from .toolgraph import ToolGraph


def field_values(output: Any, path: str) -> list[Any]:
    """All values at ``path`` ("books[].book_id") in a tool output."""
    current = [output]
    for part in path.split("."):
        is_array = part.endswith("[]")
        key = part[:-2] if is_array else part
        nxt = []
        for item in current:
            if isinstance(item, dict) and key in item:
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


class GoldTrajectory(BaseModel):
    chain_id: str
    seed: int
    envs: list[str]
    targets: list[str]
    calls: list[GoldCall]
    initial_hashes: dict[str, str]
    final_hashes: dict[str, str]
    state_changes: dict[str, dict[str, dict[str, int]]]  # env -> diff summary
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


class ChainSampler:
    def __init__(self, tool_graph: ToolGraph, config: SamplerConfig | None = None):
        self.tg = tool_graph
        self.config = config or SamplerConfig()
        self.grounders = {name: Grounder(env) for name, env in tool_graph.envs.items()}

    # ---------------------------------------------------------------- planning
    def plan(self, rng: random.Random, env_names: list[str]) -> tuple[list[PlannedCall], list[str]]:
        calls: list[PlannedCall] = []
        targets: list[str] = []
        for env_name in env_names:
            nodes = [n for n, d in self.tg.graph.nodes(data=True) if d["env"] == env_name]
            writes = [n for n in nodes if not self.tg.graph.nodes[n]["read_only"]]
            pool = writes if writes and rng.random() < self.config.write_target_bias else nodes
            target = rng.choice(sorted(pool))
            targets.append(target)
            self._plan_node(target, rng, calls, depth=0, visiting=set(), envs=set(env_names))
            self._grow_forward(rng, calls, env_name, set(env_names))
        return calls, targets

    def _plan_node(self, node: str, rng: random.Random, calls: list[PlannedCall], depth: int,
                   visiting: set[str], forced: dict[str, Binding] | None = None,
                   envs: set[str] | None = None) -> int | None:
        """Plan ``node`` after the producers of its required parameters (tools of ``envs`` only, the
        chain's environments); returns its call index."""
        data = self.tg.graph.nodes[node]
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
            for _, v, d in self.tg.graph.out_edges(calls[i].node, data=True):
                if (i, d["field"]) in busy:
                    continue
                if v == node and d["param"] == pname and (d["confirmed"] or not self.config.confirmed_only):
                    return Binding(source="call", call=i, field=d["field"], edge_source=d["source"])
        return None

    def _produce(self, node: str, pname: str, rng: random.Random, calls: list[PlannedCall], depth: int,
                 visiting: set[str], envs: set[str] | None = None) -> Binding | None:
        if depth >= self.config.max_depth:
            return None
        used = {c.node for c in calls}
        options = [(u, d) for u, d in self.tg.producers(node, pname, self.config.confirmed_only)
                   if u not in visiting and (self.config.allow_repeat or u not in used)
                   and (envs is None or self.tg.graph.nodes[u]["env"] in envs)]
        if not options:
            return None
        options.sort(key=lambda o: (o[0], o[1]["field"]))
        # Tools that create the value (it is in their output but not their input, like an order id
        # from place_order) make fresh, usable entities; prefer them most of the time.
        creators = [o for o in options if pname not in self.tg.graph.nodes[o[0]]["params"]]
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
            successors = sorted({v for c in calls for _, v, d in self.tg.graph.out_edges(c.node, data=True)
                                 if self.tg.graph.nodes[v]["env"] == env_name and v not in used
                                 and (d["confirmed"] or not self.config.confirmed_only)})
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
        try:
            for i, planned in enumerate(calls):
                ep = episodes[planned.env]
                fixed: dict[str, Any] = {}
                given: dict[tuple[int, str], list[Any]] = {}  # (call, path) -> values this call already takes
                for pname, b in planned.bindings.items():
                    if b.source != "call":
                        continue
                    value = _pick(gold[b.call].output, b.field, picks, b.call, rng, avoid=given.get((b.call, b.field), ()))
                    given.setdefault((b.call, b.field), []).append(value)
                    if value is None:
                        return Discarded(chain_id=chain_id, seed=seed, plan=[c.node for c in calls],
                                         reason=f"call {b.call + 1} ({gold[b.call].tool}) returned nothing at {b.field} for {planned.tool}.{pname}")
                    fixed[pname] = value
                args = self.grounders[planned.env].arguments(planned.tool, ep, seed=seed * 1000 + i, fixed=fixed,
                                                             optional_rate=self.config.optional_rate)
                if args is None:
                    return Discarded(chain_id=chain_id, seed=seed, plan=[c.node for c in calls],
                                     reason=f"no grounded value for a required argument of {planned.tool}")
                result = ep.call(planned.tool, args)
                if not result.ok:
                    return Discarded(chain_id=chain_id, seed=seed, plan=[c.node for c in calls],
                                     reason=f"call {i + 1} {planned.tool} failed [{result.error_kind}]: {result.error}")
                spec = envs[planned.env].manifest.tool(planned.tool)
                bindings = {p: planned.bindings.get(p, Binding(source="user")) for p in args}
                gold.append(GoldCall(env=planned.env, tool=planned.tool, arguments=args, output=result.output,
                                     bindings=bindings, masked_arguments=[m for m in spec.maskable_arguments if m in args],
                                     read_only=spec.read_only))
            diffs = {n: ep.diff() for n, ep in episodes.items()}
            trajectory = GoldTrajectory(
                chain_id=chain_id, seed=seed, envs=env_names, targets=targets, calls=gold,
                initial_hashes={n: e.initial_hash for n, e in envs.items()},
                final_hashes={n: ep.state_hash() for n, ep in episodes.items()},
                state_changes={n: d.summary() for n, d in diffs.items()})
            trajectory._gold_cells = {n: d.cells() for n, d in diffs.items()}
            return trajectory
        finally:
            for ep in episodes.values():
                ep.close()


def _first(values: list[Any]) -> Any:
    return values[0] if values else None


def _pick(output: Any, path: str, picks: dict, call: int, rng: random.Random, avoid: Iterable[Any] = ()) -> Any:
    """A value at ``path``; fields under the same array take the same element (a book's id and its title).

    Values in ``avoid`` (already given to another parameter of the same call, as when a task and the
    task it depends on both come from ``tasks[].task_id``) are skipped while the array holds another."""
    if "[]" not in path:
        return _first(field_values(output, path))
    array_path, _, rest = path.rpartition("[].")
    items = field_values(output, array_path + "[]") if array_path else []
    if not items:
        return None
    key = (call, array_path)
    if key not in picks:
        picks[key] = rng.randrange(len(items))
    value = _first(field_values(items[picks[key] % len(items)], rest))
    avoid = list(avoid)
    if value is None or value not in avoid:
        return value
    others = [v for item in items if (v := _first(field_values(item, rest))) is not None and v not in avoid]
    return rng.choice(others) if others else value


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
