"""Graph Contexts are checked up front with errors that say what to fix, whichever way they arrive
(a mapping from Studio or ``invoke(context={...})``, or the dataclass), and Studio gets a form."""
from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from envfactory.graphs import envgen, querygen
from envfactory.graphs.settings import ContextError

RUN = {"envs": ["library"], "n": 1}


@pytest.mark.parametrize("context, message", [
    ({"rolouts": 2}, "unknown context key 'rolouts', did you mean 'rollouts'"),
    ({"mode": "bogus"}, "context key 'mode' must be one of 'single', 'conv', got 'bogus'"),
    ({"rollouts": 0}, "context key 'rollouts' must be at least 1, got 0"),
    ({"rollouts": "2"}, "context key 'rollouts' must be an integer, got '2'"),
    ({"rollouts": True}, "context key 'rollouts' must be an integer, got True"),
    ({"pass_threshold": 1.5}, "context key 'pass_threshold' must be at most 1, got 1.5"),
    ({"tau": float("nan")}, "context key 'tau' must be a finite number, got nan"),
    ({"workers": -1}, "context key 'workers' must be at least 0, got -1"),
    ({"models": []}, "context key 'models' must be an object (a mapping), got []"),
    ({"prompts_dir": "/nonexistent/prompts"}, "context key 'prompts_dir' must name a folder of prompt templates"),
    ({"zzz_unrelated": 1}, "unknown context key 'zzz_unrelated' (known keys: mode, rollouts,"),
])
def test_querygen_context_mapping_errors_are_clear(context, message):
    with pytest.raises(ContextError) as err:
        querygen.make_graph().invoke(RUN, context=context)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)   # a LangGraph server shows a ValueError's message to the client


def test_the_dataclass_is_checked_the_same_way():
    with pytest.raises(ContextError, match="'pass_threshold' must be at most 1"):
        querygen.QueryGenContext(pass_threshold=1.5)
    with pytest.raises(ContextError, match="'max_rounds' must be at least 0, got -1"):
        envgen.EnvGenContext(max_rounds=-1)
    with pytest.raises(ContextError, match="'sandbox_seconds' must be more than 0"):
        envgen.make_graph().invoke({"target": "x"}, context={"sandbox_seconds": 0})
    with pytest.raises(ContextError, match="unknown context key 'max_round', did you mean 'max_rounds'"):
        envgen.make_graph().invoke({"target": "x"}, context={"max_round": 2})


def test_a_rollout_model_without_bind_tools_is_refused_with_the_reason():
    with pytest.raises(ContextError, match=r"chat_models\['rollout'\] \(FakeListChatModel\) has no bind_tools"):
        querygen.QueryGenContext(chat_models={"rollout": FakeListChatModel(responses=["hi"])})


def test_a_good_mapping_runs_like_the_dataclass():
    as_mapping = querygen.make_graph().invoke(RUN, context={"rollouts": 1, "store_path": None})
    as_class = querygen.make_graph().invoke(RUN, context=querygen.QueryGenContext(rollouts=1, store_path=None))
    assert as_mapping["summary"] == as_class["summary"] and as_mapping["summary"]["accepted"] == 1


def test_an_unknown_environment_is_our_error_with_its_message():
    from envfactory.envs.runtime.errors import EnvironmentPackageError
    with pytest.raises(EnvironmentPackageError, match="'atlantis'.*neither a folder nor a bundled environment") as err:
        querygen.make_graph().invoke({"envs": ["atlantis"], "n": 1}, context={"rollouts": 1})
    assert isinstance(err.value, ValueError)


def test_studio_forms_have_descriptions_defaults_and_bounds():
    schema = querygen.make_graph().get_context_jsonschema()
    props = schema["properties"]
    assert props["rollouts"] == {"default": 2, "description": props["rollouts"]["description"], "minimum": 1,
                                 "title": "Rollouts", "type": "integer"}
    assert props["mode"]["enum"] == ["single", "conv"] and props["pass_threshold"]["maximum"] == 1
    assert all(p.get("description") for p in props.values())
    assert "store_path" in props and "prompts_dir" in props
    assert envgen.make_graph().get_context_jsonschema()["properties"]["max_rounds"]["minimum"] == 0
    for graph in (querygen.make_graph(), envgen.make_graph(), querygen.make_chain_graph()):
        assert graph.get_input_jsonschema()["properties"], graph.name


def test_prompt_folders_take_effect_without_a_restart(tmp_path, monkeypatch):
    from envfactory.graphs.querygen.context import ContextRuntime, _ctx
    from envfactory.prompts.registry import default_registry, use_prompt_dirs
    own = tmp_path / "mine" / "query_agent" / "generate"
    own.mkdir(parents=True)
    (own / "v99.md.j2").write_text((default_registry().get("query_agent/generate").path).read_text())
    assert default_registry().versions("query_agent/generate")[-1] != "v99"
    monkeypatch.setenv("ENVFACTORY_PROMPTS_PATH", str(tmp_path / "mine"))
    assert default_registry().versions("query_agent/generate")[-1] == "v99"   # the next render sees it
    monkeypatch.delenv("ENVFACTORY_PROMPTS_PATH")
    assert default_registry().versions("query_agent/generate")[-1] != "v99"
    _ctx(ContextRuntime({"prompts_dir": str(tmp_path / "mine")}))             # a run's Context names the folder
    try:
        assert default_registry().versions("query_agent/generate")[-1] == "v99"
    finally:
        use_prompt_dirs()


def test_querygen_streams_a_custom_event_per_step():
    events = [chunk for mode, chunk in querygen.make_graph().stream(
        {"envs": ["library"], "n": 2}, context={"rollouts": 1, "store_path": None}, stream_mode=["custom", "updates"])
        if mode == "custom"]
    for slot in (0, 1):
        steps = [e["step"] for e in events if e["slot"] == slot]
        assert steps == ["sampled", "split_turns", "generate_queries", "calibrate", "roll_out", "verify"], events
    last = [e for e in events if e["step"] == "verify"]
    assert all(e["accepted"] is True and e["done"] == e["of"] == 5 and e["chain_id"] for e in last)
