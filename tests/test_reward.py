"""The verifier is itself tested: unit behaviour of each component, and on every bundled
environment: gold replays score 1, doing nothing scores 0 when the gold writes, one wrong write
scores below 1, the same writes in another order score 1."""
from __future__ import annotations

import itertools

import pytest

from envfactory.data.reward import (Call, GoldReplayError, RewardConfig, composite_reward, gold_calls_from_trajectory,
                                    replay_gold, reward_for_rollout, score_episodes, state_score, trajectory_score)
from envfactory.envs import Environment, catalog_names
from envfactory.envs.chains.sampling import ChainSampler, GoldTrajectory
from envfactory.envs.chains.confirm import build_tool_graph


def C(name, masked=(), **args):
    return Call(name=name, arguments=args, masked=list(masked))


# ---------------------------------------------------------------- trajectory F1

def test_trajectory_is_order_free_and_counts_duplicates():
    gold = [C("a", x=1), C("b", y="k"), C("a", x=1)]
    assert trajectory_score(gold, list(reversed(gold)))[0] == 1.0
    t, tp = trajectory_score(gold, [C("a", x=1), C("b", y="k")])
    assert tp == 2 and t == pytest.approx(2 * 1.0 * (2 / 3) / (1 + 2 / 3))


def test_masked_arguments_take_any_value_and_numbers_have_tolerance():
    gold = [C("search", masked=["limit"], q="x", limit=10), C("pay", amount=10.0)]
    assert trajectory_score(gold, [C("search", q="x", limit=3), C("pay", amount=10.0000000001)])[0] == 1.0
    assert trajectory_score(gold, [C("search", q="y", limit=10), C("pay", amount=10.5)])[0] == 0.0


def test_extra_arguments_must_equal_defaults():
    gold = [C("search", q="x")]
    defaults = {"search": {"available_only": False}}
    assert trajectory_score(gold, [C("search", q="x", available_only=False)], defaults=defaults)[0] == 1.0
    assert trajectory_score(gold, [C("search", q="x", available_only=True)], defaults=defaults)[0] == 0.0


def test_trajectory_edge_cases():
    assert trajectory_score([], [])[0] == 1.0
    assert trajectory_score([], [C("a")])[0] == 0.0
    assert trajectory_score([C("a")], [])[0] == 0.0
    assert trajectory_score([C("a", flag=True)], [C("a", flag=1)])[0] == 0.0  # a boolean is not a number


# ---------------------------------------------------------------- state F1 and composite

def test_state_score_is_f1_over_cells():
    g = [("update", "t", 1, "x", 2), ("delete", "t", 3)]
    assert state_score(g, list(reversed(g))) == (1.0, True)
    assert state_score(g, g[:1])[0] == pytest.approx(2 / 3)
    assert state_score([], [("delete", "t", 3)]) == (0.0, False)  # an unwanted write on a read-only task
    assert state_score([], []) == (1.0, True)


def test_composite_formula_and_penalties(library_env):
    gold = replay_gold({"library": library_env}, [C("checkout_book", member_id=3, book_id=1)])
    pred_calls = [C("checkout_book", member_id=3, book_id=1)] + [C("get_book", book_id=1)] * 3
    r = composite_reward(gold, pred_calls, gold.cells, n_malformed=2, cfg=RewardConfig(tau=0.5))
    assert r.trajectory == pytest.approx(2 * (1 / 4) * 1 / (1 + 1 / 4))
    assert r.state == 1.0 and r.state_equal
    assert r.length_penalty == pytest.approx(0.05 * (4 + 2 - 1))
    assert r.format_penalty == pytest.approx(0.1)
    assert r.score == pytest.approx(max(0.5 * r.trajectory + 0.5 - r.length_penalty - r.format_penalty, 0))
    capped = composite_reward(gold, [C("get_book", book_id=1)] * 30, {}, n_malformed=30)
    assert capped.length_penalty == 0.5 and capped.format_penalty == 0.5 and capped.score == 0.0


def test_a_turn_whose_gold_only_reads_is_scored_by_trajectory_and_answer(library_env):
    """An empty gold change set says nothing: doing nothing must not earn the state half of the reward."""
    gold = replay_gold({"library": library_env}, [C("get_book", book_id=1)])
    assert gold.cells == {"library": []}
    nothing = composite_reward(gold, [], {"library": []})
    assert nothing.score == 0.0 and nothing.read_only_gold and nothing.state == 0.0
    right = composite_reward(gold, [C("get_book", book_id=1)], {"library": []})
    assert right.score == 1.0 and right.state == 1.0
    # the right read plus a write the user never asked for: the answer term is lost
    wrote = replay_gold({"library": library_env}, [C("checkout_book", member_id=3, book_id=1)])
    bad = composite_reward(gold, [C("get_book", book_id=1), C("checkout_book", member_id=3, book_id=1)], wrote.cells)
    assert bad.state == 0.0 and bad.score == pytest.approx(0.5 * bad.trajectory - bad.length_penalty)
    # a caller that scores the final answer replaces T in the answer term
    assert composite_reward(gold, [C("get_book", book_id=1)], {"library": []}, answer=0.0).score == 0.5
    # a turn that writes keeps the state score
    assert not composite_reward(wrote, [], {"library": []}).read_only_gold


def test_infrastructure_failures_give_no_score(library_env):
    broken = reward_for_rollout({"library": library_env}, [C("return_book", loan_id=999999)], {"library": library_env.episode()})
    assert broken.score is None and "failed on replay" in broken.failure
    with pytest.raises(GoldReplayError):
        replay_gold({"library": library_env}, [Call(name="checkout_book", arguments={"member_id": 3, "book_id": 1}, env="other")])


def test_malformed_calls_count_as_format_errors(library_env):
    gold = replay_gold({"library": library_env}, [C("checkout_book", member_id=3, book_id=1)])
    ep = library_env.episode()
    ep.call("checkout_book", {"member_id": "three", "book_id": 1})   # schema-invalid
    ep.call("lend_book", {"member_id": 3})                             # unknown tool
    ep.call("checkout_book", {"member_id": 3, "book_id": 1})
    r = score_episodes(gold, {"library": ep})
    assert r.format_penalty == pytest.approx(0.1) and r.trajectory == 1.0 and r.state == 1.0
    assert r.score == pytest.approx(1.0 - 0.1 - 0.1)


# ---------------------------------------------------------------- on every bundled environment

def _write_trajectories(name: str, want: int = 6) -> tuple[Environment, list[GoldTrajectory]]:
    env = Environment.load(name)
    sampler = ChainSampler(build_tool_graph(env))
    found = []
    for seed in range(300):
        t = sampler.sample(seed)
        if isinstance(t, GoldTrajectory) and any(not c.read_only for c in t.calls):
            found.append(t)
            if len(found) == want:
                break
    assert found, f"{name}: no executable chain with a write in 300 seeds"
    return env, found


def _run(env, calls):
    ep = env.episode()
    ok = all(ep.call(c.name, c.arguments).ok for c in calls)
    return ep, ok


@pytest.mark.parametrize("name", catalog_names())
def test_verifier_on_catalog_environment(name):
    env, trajectories = _write_trajectories(name, want=8)  # 8: enough for a pair of write chains that commute (chains that create rows do not)
    envs = {name: env}
    reordered_checked = wrong_checked = False
    reads_checked = 0
    for traj in trajectories:
        gold_calls = gold_calls_from_trajectory(traj)
        ref = replay_gold(envs, gold_calls)
        # 1. replaying the gold scores 1
        ep, ok = _run(env, gold_calls)
        assert ok and score_episodes(ref, {name: ep}).score == 1.0
        # 2. doing nothing scores 0, on the whole chain and on its reads alone
        assert score_episodes(ref, {name: env.episode()}).score == 0.0
        for read in (c for c in gold_calls if env.manifest.tool(c.name).read_only):
            try:  # a read of a row the chain created does not replay alone
                read_ref = replay_gold(envs, [read])
            except GoldReplayError:
                continue
            assert score_episodes(read_ref, {name: env.episode()}).score == 0.0
            ep, ok = _run(env, [read])
            assert ok and score_episodes(read_ref, {name: ep}).score == 1.0
            reads_checked += 1
        # 3. one extra wrong write scores below 1
        write = next(c for c in reversed(gold_calls) if not env.manifest.tool(c.name).read_only)
        ep, _ = _run(env, gold_calls)
        before = ep.state_hash()
        extra = _extra_write(env, ep, exclude=write)
        if extra is not None:
            assert ep.state_hash() != before
            assert score_episodes(ref, {name: ep}).score < 1.0
            wrong_checked = True
    assert wrong_checked, f"{name}: could not make any extra write"
    assert reads_checked, f"{name}: no read of the chains replays alone"
    # 4. the same writes in another order score 1 (two independent write chains concatenated)
    for a, b in itertools.permutations(trajectories, 2):
        gold_calls = gold_calls_from_trajectory(a) + gold_calls_from_trajectory(b)
        try:
            ref = replay_gold(envs, gold_calls)
        except GoldReplayError:
            continue
        swapped = gold_calls_from_trajectory(b) + gold_calls_from_trajectory(a)
        ep, ok = _run(env, swapped)
        if ok and sorted(ep.diff().cells(), key=repr) == sorted(ref.cells[name], key=repr):
            assert score_episodes(ref, {name: ep}).score == 1.0
            reordered_checked = True
            break
    assert reordered_checked, f"{name}: found no pair of write chains that commute"


def _extra_write(env, ep, exclude):
    """Make one more successful write that the gold did not make (a wrong action)."""
    from envfactory.envs.chains.grounding import Grounder
    grounder = Grounder(env)
    for spec in env.tool_specs:
        if spec.read_only:
            continue
        for seed in range(8):
            args = grounder.arguments(spec.name, ep, seed=seed)
            if args is None or (spec.name == exclude.name and args == exclude.arguments):
                continue
            if ep.call(spec.name, args).ok:
                return spec.name, args
    return None
