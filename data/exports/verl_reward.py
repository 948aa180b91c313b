"""``compute_score`` for verl: our composite reward on the calls the agent loop executed.

Point ``custom_reward_function.path`` at this file (or at the ``reward_fn.py`` the export writes
next to the parquet files) and ``custom_reward_function.name=compute_score``.

The predicted calls come from the agent loop (``extra_fields["envfactory_rollout"]``, which verl
merges into ``extra_info``), never from a regex over ``solution_str``: the decoded response also holds
the tool outputs. The score is recomputed from scratch, tau2-style: the turn's starting state is
rebuilt (earlier turns' gold replayed, hash checked), the gold calls of the turn are replayed on it
(and must end in the state the row was exported with), the rollout's calls are replayed on another copy (its final hash must equal what the loop saw), and
``data/reward.py`` compares the two.

No-score rule: when the environment drifted, the gold no longer replays, the environment crashed or
the rollout is not reproducible, the sample has no score. verl needs a number, so the dict carries
``scored = 0`` and ``score = failure_score`` (default 0.0) as a placeholder. The agent loop runs the
same checks (``EpisodeRollout``: drift and the turn's gold when it starts, crashes and reproducibility
when it ends) and zeroes such a sample's response mask, so the placeholder trains nothing; the checks
here only repeat them where the reward is computed. Every other key is a number too
(verl logs them as ``reward_extra_info``; strings would break its metric aggregation).
"""
from __future__ import annotations

import json
import logging
from typing import Any

from envfactory.data.reward import GoldReplayError, RewardConfig, RewardResult, score_episodes

# absolute imports: verl loads this file by path, outside its package
from envfactory.data.exports.calls import parse_calls
from envfactory.data.exports.verl_loop import EXTRA_FIELDS_KEY, GROUND_TRUTH
from envfactory.data.exports.verl_task import StateDriftError, VerlTask, replay_rollout, turn_gold

log = logging.getLogger(__name__)

FAILURES = {"state_drift": 1, "gold_replay": 2, "env_crash": 3, "not_reproducible": 4, "no_rollout_record": 5,
            "bad_row": 6}
KEYS = ("score", "scored", "failure_code", "trajectory", "state", "length_penalty", "format_penalty",
        "matched_calls", "predicted_calls", "gold_calls", "state_equal", "read_only_gold")


def rollout_fields(extra_info: dict[str, Any] | None, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """Find the agent loop's record wherever this verl version put it."""
    places = [extra_info or {}, (extra_info or {}).get("tool_extra_fields") or {},
              kwargs.get("extra_fields") or {}, kwargs.get("tool_extra_fields") or {}]
    for place in places:
        if hasattr(place, "get") and place.get(EXTRA_FIELDS_KEY):
            return dict(place[EXTRA_FIELDS_KEY])
    return None


def score_rollout(ground_truth: Any, extra_info: dict[str, Any], rollout: dict[str, Any] | None,
                  cfg: RewardConfig | None = None) -> tuple[RewardResult, str | None]:
    """The full result and, when there is no score, which failure (a key of FAILURES)."""
    try:
        task = VerlTask.from_extra_info(extra_info)
        gold = parse_calls(ground_truth, GROUND_TRUTH)
    except ValueError as exc:
        return RewardResult(score=None, failure=str(exc)), "bad_row"
    if rollout is None:
        return RewardResult(score=None, failure="no envfactory agent-loop record in extra_info: set the rows' "
                                                "agent_name to the envfactory loop"), "no_rollout_record"
    if rollout.get("failure"):  # found by the agent loop, which has already masked the sample
        kind = rollout.get("failure_kind")
        if kind not in FAILURES:  # a record from an older loop: only the text says which failure
            kind = "state_drift" if "drift" in rollout["failure"] or "failed to load" in rollout["failure"] else "env_crash"
        return RewardResult(score=None, failure=rollout["failure"]), kind
    calls = json.loads(rollout.get("calls") or "[]")
    try:
        reference = turn_gold(task, gold)
        episodes = replay_rollout(task, calls)
    except StateDriftError as exc:
        return RewardResult(score=None, failure=f"state drift: {exc}"), "state_drift"
    except GoldReplayError as exc:
        return RewardResult(score=None, failure=str(exc)), "gold_replay"
    try:
        seen = rollout.get("final_hashes") or {}
        for name, ep in episodes.items():
            if name in seen and seen[name] != ep.state_hash():
                return (RewardResult(score=None, failure=f"replaying the rollout's calls on {name} does not reach the "
                                                         "state the agent loop ended in"), "not_reproducible")
        result = score_episodes(reference, episodes, n_malformed=int(rollout.get("malformed") or 0), cfg=cfg)
    finally:
        for ep in episodes.values():
            ep.close()
    return result, (None if result.score is not None else "env_crash")


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None = None,
                  failure_score: float = 0.0, tau: float | None = None, length_slack: int | None = None,
                  **kwargs) -> dict[str, float]:
    """verl's reward hook: ``{"score": R, ...every component}``; ``scored = 0`` marks a sample without score."""
    cfg = RewardConfig(**{k: v for k, v in (("tau", tau), ("length_slack", length_slack)) if v is not None})
    result, failure = score_rollout(ground_truth, extra_info or {}, rollout_fields(extra_info, kwargs), cfg)
    if failure is not None:
        log.warning("envfactory: no score for %s turn %s: %s", (extra_info or {}).get("record_key"),
                    (extra_info or {}).get("turn"), result.failure)
    out = {"score": float(result.score) if result.score is not None else float(failure_score),
           "scored": 1.0 if result.score is not None else 0.0,
           "failure_code": float(FAILURES.get(failure, 0)) if failure else 0.0,
           "trajectory": float(result.trajectory or 0.0), "state": float(result.state or 0.0),
           "length_penalty": float(result.length_penalty), "format_penalty": float(result.format_penalty),
           "matched_calls": float(result.matched_calls), "predicted_calls": float(result.predicted_calls),
           "gold_calls": float(result.gold_calls), "state_equal": 1.0 if result.state_equal else 0.0,
           "read_only_gold": 1.0 if result.read_only_gold else 0.0}
    return out
