"""The leakage check: hidden ids (values only tool outputs carry) must not appear in user queries,
but small ids that collide with everyday numbers (days, hours, counts) are flagged only where the
query uses them as ids."""
from __future__ import annotations

import pytest

from envfactory.agents.query_agent import leaked_terms
from envfactory.agents.refine_agent import check_leakage
from envfactory.envs.chains.sampling import Binding, GoldCall, GoldTrajectory

PARAMS = ["task_id", "depends_on_id", "assignee_id", "order_id", "title", "due_date"]


@pytest.mark.parametrize("query,hidden", [
    ("add task 12 as a dependency of task 7", [12, 7]),
    ("tasks 3, 4 and 5 are blocked", [3, 4, 5]),
    ("tasks #3 and #4", [3, 4]),
    ("close ticket #5", [5]),
    ("the one with ID: 9", [9]),
    ("its id is 9", [9]),
    ("order no. 9 never came", [9]),
    ("give it to assignee 6", [6]),
    ("please update 57 to high priority", [57]),   # larger ids are flagged wherever they stand alone
    ("permit P-3 again", ["P-3"]),
])
def test_ids_used_as_ids_are_flagged(query, hidden):
    found = leaked_terms(query, [], PARAMS, hidden)
    assert found == [f"id {v} that comes from a tool output" for v in hidden]


@pytest.mark.parametrize("query,hidden", [
    ("deliver by the 11th, 3 bags please", [3, 11]),
    ("a table for 4 people at 7 pm on 2026-05-11", [4, 7, 11]),
    ("set the estimate to 5 hours", [5]),
    ("I have 2 tasks due in 3 days", [2, 3]),
    ("no, 3 is fine", [3]),
    ("the number of tasks is 4", [4]),
    ("in 10 days, after 3 reviews", [10, 3]),
])
def test_everyday_small_numbers_are_not_flagged(query, hidden):
    assert leaked_terms(query, [], PARAMS, hidden) == []


def _chain() -> GoldTrajectory:
    search = GoldCall(env="productivity", tool="search_tasks", arguments={"query": "review"}, read_only=True,
                      output={"tasks": [{"task_id": 12}, {"task_id": 7}]}, bindings={"query": Binding(source="user")})
    link = GoldCall(env="productivity", tool="add_dependency", arguments={"task_id": 12, "depends_on_id": 7},
                    output={"task_id": 12}, read_only=False,
                    bindings={"task_id": Binding(source="call", call=0, field="tasks[].task_id"),
                              "depends_on_id": Binding(source="call", call=0, field="tasks[].task_id")})
    return GoldTrajectory(chain_id="t", seed=0, envs=["productivity"], targets=["add_dependency"], calls=[search, link],
                          initial_hashes={}, final_hashes={}, state_changes={})


def test_check_leakage_on_a_chain_both_ways():
    names = ["search_tasks", "add_dependency"]
    leaky = check_leakage(_chain(), ["Find the review tasks and make task 12 wait for task 7."], [[0, 1]], names, PARAMS)
    assert not leaky.ok and leaky.leaks == ["turn 1: id 12 that comes from a tool output",
                                            "turn 1: id 7 that comes from a tool output"]
    fine = check_leakage(_chain(), ["Find the review tasks due in 12 days and make the first wait for the one "
                                    "we talked about at 7 this morning."], [[0, 1]], names, PARAMS)
    assert fine.ok, fine.leaks


def test_an_id_ending_a_sentence_is_flagged_but_not_one_inside_a_version_or_date():
    assert leaked_terms("Please cancel order 57.", [], PARAMS, [57]) == ["id 57 that comes from a tool output"]
    assert leaked_terms("Use release 1.57 or 57.2 on 2026-01-57", [], PARAMS, [57]) == []
