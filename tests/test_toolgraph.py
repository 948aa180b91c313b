"""Tool dependency graph: typed edges with sources, execution confirmation, parameter classes,
exports, and topology-aware sampling into gold trajectories."""
from __future__ import annotations

import json

import networkx as nx
import pytest

from envfactory.envs import Environment, catalog_names
from envfactory.envs.chains.sampling import ChainSampler, Discarded, GoldTrajectory, SamplerConfig, chain_statistics, field_values, sample_many
from envfactory.envs.chains.confirm import build_tool_graph
from envfactory.envs.chains.toolgraph import classify_parameter, output_fields


@pytest.fixture(scope="module")
def library_graph():
    return build_tool_graph(Environment.load("library"))


def test_output_fields_flatten_arrays_of_objects():
    schema = {"type": "object", "properties": {"total": {"type": "integer"}, "books": {"type": "array", "items": {
        "type": "object", "properties": {"book_id": {"type": "integer"}, "title": {"type": "string"}}}}}}
    paths = {f.path: f.type for f in output_fields(schema)}
    assert paths == {"total": "integer", "books": "array", "books[].book_id": "integer", "books[].title": "string"}
    assert field_values({"books": [{"book_id": 1}, {"book_id": 2}]}, "books[].book_id") == [1, 2]


@pytest.mark.parametrize("name,schema,origin", [
    ("book_id", {"type": "integer"}, "tool"),
    ("email", {"type": "string"}, "user"),
    ("status", {"type": "string", "enum": ["a", "b"]}, "user"),
    ("start_date", {"type": "string"}, "user"),
    ("member_ids", {"type": "array"}, "tool"),
])
def test_parameter_classification(name, schema, origin):
    assert classify_parameter(name, schema)[0] == origin


def test_edges_record_source_and_confirmation(library_graph):
    edges = {(u, v, d["param"]): d for u, v, d in library_graph.edges()}
    lend = edges[("checkout_book", "renew_loan", "loan_id")]
    assert lend["source"] == "name_match" and lend["confirmed"]
    assert lend["field"] == "loan_id"
    assert "checkout_book" in lend["evidence"]["chain"]
    member = edges[("find_member", "checkout_book", "member_id")]
    assert member["confirmed"]
    # user-statable parameters get no producer edges
    assert not any(d["param"] in ("email", "genre", "status") for _, _, d in library_graph.edges())
    # every unconfirmed edge says why
    assert all(isinstance(d["evidence"], str) and d["evidence"] for _, _, d in library_graph.edges(confirmed=False))


def test_foreign_key_edges_are_found(tmp_path):
    import shutil
    pkg = tmp_path / "lib"
    shutil.copytree(Environment.load("library").package_dir, pkg)
    manifest = json.loads((pkg / "env.json").read_text())
    # rename checkout's member_id parameter to borrower_id and back the rename with a foreign key
    (pkg / "schema.sql").write_text((pkg / "schema.sql").read_text() + "\nCREATE TABLE cards (card_id INTEGER PRIMARY KEY, borrower_id INTEGER REFERENCES members(member_id));\n")
    tool = next(t for t in manifest["tools"] if t["name"] == "list_member_loans")
    tool["input_schema"]["properties"]["borrower_id"] = tool["input_schema"]["properties"].pop("member_id")
    tool["input_schema"]["required"] = ["borrower_id"]
    (pkg / "env.json").write_text(json.dumps(manifest))
    (pkg / "tools.py").write_text((pkg / "tools.py").read_text().replace(
        "def list_member_loans(ctx, member_id, status=None):", "def list_member_loans(ctx, borrower_id, status=None):\n    member_id = borrower_id"))
    tg = build_tool_graph(Environment.load(pkg, trust=True))
    fk = [d for u, v, d in tg.edges() if v == "list_member_loans" and d["param"] == "borrower_id"]
    assert fk and all(d["source"] == "foreign_key" and d["field"].endswith("member_id") for d in fk)
    assert any(d["confirmed"] for d in fk)


def test_proposals_are_kept_apart_until_confirmed(library_graph):
    env = Environment.load("library")
    tg = build_tool_graph(env, proposals=[{"producer": "search_books", "consumer": "cancel_hold", "param": "hold_id",
                                           "field": "total", "source": "llm"}])
    llm = [d for u, v, d in tg.edges() if d["source"] == "llm"]
    assert len(llm) == 1 and not llm[0]["confirmed"]  # a book count is not a hold id: execution refuses it


def test_graph_depth_and_exports(library_graph, tmp_path):
    summary = library_graph.summary()
    assert summary["depth_confirmed"] >= 4
    assert summary["confirmed_edges"] + summary["unconfirmed_edges"] == summary["edges"]
    paths = library_graph.write(tmp_path, "library")
    loaded = json.loads(paths["json"].read_text())
    assert loaded["summary"]["tools"] == 9
    assert nx.read_graphml(paths["graphml"]).number_of_edges() == summary["edges"]
    png = library_graph.draw(tmp_path / "library.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sampling_is_deterministic_and_executable(library_graph):
    sampler = ChainSampler(library_graph)
    first = [sampler.sample(s) for s in range(12)]
    second = [sampler.sample(s) for s in range(12)]
    assert [x.model_dump() for x in first] == [x.model_dump() for x in second]
    kept = [x for x in first if isinstance(x, GoldTrajectory)]
    assert kept, "no chain executed"
    env = Environment.load("library")
    for traj in kept:
        names = [c.tool for c in traj.calls]
        assert len(names) == len(set(names)), "a tool appears twice without allow_repeat"
        with env.episode() as ep:  # the gold trajectory replays to the recorded final state
            for call in traj.calls:
                assert ep.call(call.tool, call.arguments).ok
            assert ep.state_hash() == traj.final_hashes["library"]
        for i, call in enumerate(traj.calls):
            for param, binding in call.bindings.items():
                if binding.source == "call":
                    assert binding.call < i
                    assert call.arguments[param] in field_values(traj.calls[binding.call].output, binding.field)


def test_discarded_chains_say_why(library_graph):
    sampler = ChainSampler(library_graph)
    dropped = [x for x in (sampler.sample(s) for s in range(40)) if isinstance(x, Discarded)]
    assert dropped and all(d.reason and d.plan for d in dropped)


def test_statistics_cover_tools_and_edges(library_graph):
    kept, dropped = sample_many(ChainSampler(library_graph), 25, seed=100)
    stats = chain_statistics(library_graph, kept, dropped)
    assert stats["kept"] == 25 and stats["tool_coverage"] > 0.6 and stats["edge_coverage"] > 0.3
    assert 0 < stats["read_share"] < 1
    assert sum(stats["length_distribution"].values()) == 25


def test_multi_environment_chains():
    names = [n for n in catalog_names()][:2]
    if len(names) < 2:
        pytest.skip("needs two bundled environments")
    tg = build_tool_graph([Environment.load(n) for n in names])
    sampler = ChainSampler(tg, SamplerConfig(max_envs=2))
    multi = [t for t in (sampler.sample(s, env_names=names) for s in range(30)) if isinstance(t, GoldTrajectory)]
    assert multi and all(set(t.envs) == set(names) for t in multi)
    assert any({c.env for c in t.calls} == set(names) for t in multi)


def test_single_environment_chains_from_a_multi_environment_graph_stay_in_their_environment():
    """A graph over several environments may hold cross-environment edges; a chain of one environment
    must still plan producers from that environment only (a producer from elsewhere has no episode)."""
    names = ["commerce", "productivity", "travel"]
    tg = build_tool_graph([Environment.load(n) for n in names])
    sampler = ChainSampler(tg, SamplerConfig(max_envs=1))
    chains = [sampler.sample(s) for s in range(40)]
    kept = [t for t in chains if isinstance(t, GoldTrajectory)]
    assert kept
    for t in kept:
        assert len(t.envs) == 1 and {c.env for c in t.calls} == set(t.envs)
