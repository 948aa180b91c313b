"""Cut a trajectory record into its user turns, checked: the one helper the per-turn exports (verl, trl) share.

A per-turn row shows the conversation up to a turn's user message and trains that turn's gold calls
from the state the earlier turns' gold calls leave. That only holds when

(a) the record has exactly one user message per turn. A conversational record whose simulated user
    spoke more than once in a turn (a clarification, an extra request) has more user messages than
    turns, and nothing in the record says which message opens which turn: the simulator's words are
    not the turn's query, so any guess could pair a prompt with another turn's gold. Such records are
    refused, not guessed at;
(b) the calls the conversation itself made before a turn lead to the state the gold calls of the
    earlier turns lead to (otherwise the prompt's history contradicts the environment the turn runs in);
(c) every gold call still replays, from the environment version and initial state the record names,
    to the record's gold final state.

A record that fails any of them raises NotExportable with the reason; the exporters skip it and report why.
"""
from __future__ import annotations

from dataclasses import dataclass

from envfactory.data.records import TrajectoryRecord
from envfactory.data.reward import Call, GoldReplayError, run_calls
from envfactory.envs.runtime.cache import load_env
from envfactory.envs.runtime.environment import Environment

from envfactory.data.exports.verl_task import route


class NotExportable(ValueError):
    """A record that cannot become per-turn rows (its gold no longer replays, its turns do not align...)."""


@dataclass
class RecordTurn:
    index: int                    # 0-based turn number
    user_index: int               # index of the turn's user message in ``record.messages``
    calls: list[Call]             # the turn's gold calls
    prefix: list[Call]            # the earlier turns' gold calls, in order
    start_hashes: dict[str, str]  # env -> state hash when the turn starts
    gold_hashes: dict[str, str]   # env -> state hash after the turn's gold calls


def user_message_indexes(record: TrajectoryRecord) -> list[int]:
    """Index of each turn's user message in ``record.messages``; check (a)."""
    users = [i for i, m in enumerate(record.messages) if m.role == "user"]
    if len(users) != len(record.turns):
        raise NotExportable(f"{len(users)} user messages for {len(record.turns)} turns, so the turns cannot be cut into "
                            "rows (a record without a kept rollout, or a conversation whose simulated user spoke "
                            "more than once in a turn)")
    return users


def _gold_calls(turn) -> list[Call]:
    return [Call(name=c.name, arguments=c.arguments, masked=c.masked_arguments, env=c.env) for c in turn.gold_calls]


def cut_turns(record: TrajectoryRecord) -> tuple[dict[str, Environment], list[RecordTurn]]:
    """The record's environments and its turns, with the states each turn starts and ends in.

    Raises NotExportable when a check fails, and lets EnvironmentPackageError / UntrustedCodeError
    through when an environment no longer loads (the exporters skip those records too)."""
    users = user_message_indexes(record)
    envs = {ref.name: load_env(ref.name) for ref in record.envs}
    for ref in record.envs:
        env = envs[ref.name]
        if env.initial_hash != ref.initial_state_hash or env.manifest.version != ref.version:
            raise NotExportable(f"{ref.name} changed since the record was made (version {env.manifest.version} vs "
                                f"{ref.version}, or a different initial state): regenerate the record")
    gold = {n: e.episode() for n, e in envs.items()}
    # the calls the conversation itself made: the prompt's history must lead to the state the turn starts from
    spoken = {n: e.episode() for n, e in envs.items()}
    turns: list[RecordTurn] = []
    prefix: list[Call] = []
    try:
        for t, turn in enumerate(record.turns):
            start = {n: ep.state_hash() for n, ep in gold.items()}
            if t > 0:
                for m in record.messages[users[t - 1]:users[t]]:
                    for c in m.tool_calls:
                        if (owner := route(envs, c.name)) is not None:
                            spoken[owner[0]].call(owner[1], c.arguments)  # its own failures are part of the history
                if any(spoken[n].state_hash() != start[n] for n in envs):
                    raise NotExportable(f"before turn {t + 1} the conversation's own calls lead to another state than the "
                                        "gold calls: its history would contradict the environment")
            calls = _gold_calls(turn)
            try:
                run_calls(gold, calls)
            except GoldReplayError as exc:
                raise NotExportable(f"turn {t + 1}: {exc}") from exc
            turns.append(RecordTurn(t, users[t], calls, list(prefix), start, {n: ep.state_hash() for n, ep in gold.items()}))
            prefix += calls
        for ref in record.envs:
            if ref.final_state_hash and gold[ref.name].state_hash() != ref.final_state_hash:
                raise NotExportable(f"replaying every gold call on {ref.name} does not reach the record's gold final state")
    finally:
        for ep in [*gold.values(), *spoken.values()]:
            ep.close()
    return envs, turns
