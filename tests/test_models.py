"""Per-role model configuration, the offline tier, usage and cost."""
from __future__ import annotations

import pytest

from envfactory.agents.models import ModelSettings, generated_by, resolve_model
from envfactory.agents.usage import UsageTracker
from tests.doubles import ScriptedChatModel


def test_nothing_configured_means_offline_tier():
    assert resolve_model("query", environ={}) is None
    tag = generated_by("query", None, offline="offline:template-verbalizer")
    assert tag.tier == "offline" and tag.model is None and tag.implementation == "offline:template-verbalizer"


def test_precedence_file_then_env_then_overrides(tmp_path):
    cfg = tmp_path / "models.yaml"
    cfg.write_text("default:\n  model: base-model\n  base_url: http://127.0.0.1:9/v1\nrollout:\n  model: rollout-model\n"
                   "prices:\n  base-model: {input: 1.0, output: 2.0}\n")
    env = {"ENVFACTORY_MODELS": str(cfg), "ENVFACTORY_QUERY_MODEL": "query-from-env", "ENVFACTORY_TEMPERATURE": "0.1"}
    s = ModelSettings.load(environ=env, overrides={"judge": {"model": "judge-override"}})
    assert s.roles["search"].model == "base-model" and s.roles["rollout"].model == "rollout-model"
    assert s.roles["query"].model == "query-from-env" and s.roles["query"].temperature == 0.1
    assert s.roles["judge"].model == "judge-override"
    assert s.prices["base-model"] == {"input": 1.0, "output": 2.0}


def test_openai_compatible_model_reads_key_from_named_env_var():
    env = {"ENVFACTORY_MODEL": "m1", "ENVFACTORY_BASE_URL": "http://127.0.0.1:1/v1", "ENVFACTORY_API_KEY_ENV": "MY_KEY",
           "MY_KEY": "sk-test-123"}
    model = resolve_model("code", ModelSettings.load(environ=env), environ=env)
    assert model.model_name == "m1" and model.openai_api_key.get_secret_value() == "sk-test-123"
    assert str(model.openai_api_base).startswith("http://127.0.0.1:1/v1")


def test_injected_model_wins_over_configuration():
    fake = ScriptedChatModel(script=["hi"])
    env = {"ENVFACTORY_MODEL": "configured"}
    assert resolve_model("refine", ModelSettings.load(environ=env), injected={"refine": fake}) is fake
    assert generated_by("refine", fake).model == "scripted"


def test_unknown_role_provider_and_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown role 'chef'"):
        resolve_model("chef", environ={})
    s = ModelSettings.load(environ={}, overrides={"code": {"model": "x", "provider": "acme"}})
    with pytest.raises(ValueError, match="unknown provider 'acme'"):
        resolve_model("code", s, environ={})
    s = ModelSettings.load(environ={}, overrides={"code": {"model": "x", "provider": "anthropic"}})
    with pytest.raises(ValueError, match="needs the package langchain-anthropic"):
        resolve_model("code", s, environ={})
    bad = tmp_path / "m.yaml"
    bad.write_text("chef:\n  model: x\n")
    with pytest.raises(ValueError, match="unknown role"):
        ModelSettings.load(bad, environ={})


def test_usage_and_cost_accumulate_per_role_and_model():
    tracker = UsageTracker(prices={"scripted": {"input": 1.0, "output": 10.0}})
    model = ScriptedChatModel(script=["one two three", "four"])
    model.invoke("a b c d", config={"callbacks": [tracker.for_role("query")]})
    model.invoke("e f", config={"callbacks": [tracker.for_role("judge")]})
    report = tracker.report()
    rows = {r["role"]: r for r in report["by_role_and_model"]}
    assert rows["query"]["input"] == 4 and rows["query"]["output"] == 3 and rows["judge"]["calls"] == 1
    assert report["cost_usd"] == pytest.approx((6 * 1.0 + 4 * 10.0) / 1_000_000)


def test_a_run_after_the_settings_changed_gets_the_new_model(monkeypatch):
    from envfactory.agents.models import model_for, model_name
    monkeypatch.setenv("ENVFACTORY_MODEL", "first-model")
    monkeypatch.setenv("ENVFACTORY_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    first = model_for("query")
    assert model_name(first) == "first-model" and model_for("query") is first  # one client per settings
    monkeypatch.setenv("ENVFACTORY_MODEL", "second-model")
    assert model_name(model_for("query")) == "second-model"
    monkeypatch.delenv("ENVFACTORY_MODEL")
    monkeypatch.delenv("ENVFACTORY_BASE_URL")
    assert model_for("query") is None
