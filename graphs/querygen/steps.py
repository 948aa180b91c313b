"""The five per-chain agent steps (split into user turns, generate queries, calibrate, roll out,
verify), each a graph node and a generator body the slot drivers run."""
from __future__ import annotations


from typing import Any

from langgraph.runtime import Runtime

from envfactory.agents import determinacy, query_agent, refine_agent, rollout_agent, solver
from envfactory.agents.models import model_name
from envfactory.data.records import (EnvRef, GoldCallRef, Provenance, TrajectoryRecord, UserTurn, Verification,
                                     record_key)
from envfactory.data.reward import (GoldReplayError, RewardConfig, score_episodes)
from envfactory.envs.runtime.cache import load_env
from envfactory.envs.runtime.lru import BoundedCache
from envfactory.envs.chains.sampling import GoldTrajectory


from envfactory.graphs.querygen.context import CODE_VERSION, DEFAULT_SYSTEM_PROMPT, QueryGenContext, _ctx
from envfactory.graphs.querygen.driver import _Ask, _Await, _drive
from envfactory.graphs.querygen.resources import _gold_reference, _session_pools, _store, _worker_flag
from envfactory.graphs.querygen.state import ChainState

def task_key(chain: GoldTrajectory, ctx: QueryGenContext) -> str:
    models = sorted((role, str(cfg.get("model"))) for role, cfg in ctx.models.items())
    injected = sorted((role, model_name(m)) for role, m in ctx.chat_models.items())
    return record_key(chain.chain_id, chain.seed, ctx.mode, ctx.rollouts, sorted(ctx.prompt_versions.items()), models,
                      injected, ctx.offline, CODE_VERSION)

_validated_chains = BoundedCache(1024)  # id(chain dict) -> (that dict, its GoldTrajectory)

def _chain(state: ChainState) -> GoldTrajectory:
    """The state's chain as a ``GoldTrajectory``, validated once per chain dict rather than in each
    of the five steps (pydantic validation of a chain was ~5% of a task's CPU). Keyed by the dict's
    identity, checked on lookup, so a copied or replaced dict is validated afresh."""
    data = state["chain"]
    hit = _validated_chains.get(id(data))
    if hit is not None and hit[0] is data:
        return hit[1]
    chain = GoldTrajectory.model_validate(data)
    _validated_chains.put(id(data), (data, chain))
    return chain

def split_turns(state: ChainState, runtime: Runtime[QueryGenContext]) -> dict[str, Any]:
    chain = _chain(state)
    return {"turns": query_agent.split_turns(chain, chain.seed), "key": task_key(chain, _ctx(runtime)),
            "tiers": {}}

def _model(ctx: QueryGenContext, role: str):
    from envfactory.agents.models import model_for
    return model_for(role, offline=ctx.offline, injected=ctx.chat_models, overrides=ctx.models)

def _retry(ctx: QueryGenContext, role: str):
    """How the role's failed model calls are retried before the task is left not done."""
    from envfactory.agents.models import retry_policy_for
    return retry_policy_for(role, ctx.models)

def _unfinished(step: str, exc: Exception) -> dict[str, Any] | None:
    """A model endpoint that kept failing says nothing about the task: not done, tried again next run."""
    from envfactory.agents.transient import is_transient
    return {"unfinished": f"{step}: {exc}"} if getattr(exc, "transient", False) or is_transient(exc) else None

def generate_queries(state: ChainState, runtime: Runtime[QueryGenContext]) -> dict[str, Any]:
    return _drive(_generate_queries(state, _ctx(runtime)))

def _generate_queries(state: ChainState, ctx: QueryGenContext):
    chain = _chain(state)
    descriptions = {t.name: t.description for n in chain.envs for t in load_env(n).tool_specs}
    model = _model(ctx, "query")
    if model is None:
        queries = query_agent.template_queries(chain, state["turns"], descriptions)
        return {"queries": queries, "tiers": {**state.get("tiers", {}), "query": query_agent.OFFLINE_TIER}}
    from envfactory.agents.structured import StructuredOutputError
    rendered = query_agent.generate_prompt(chain, state["turns"], descriptions, ctx.persona,
                                           ctx.prompt_versions.get("query_agent/generate", "latest"))
    update = {"tiers": {**state.get("tiers", {}), "query": "model"},
              "prompts": state.get("prompts", []) + [rendered.ref.model_dump()],
              "models": {**state.get("models", {}), "query": model_name(model)}}
    try:
        out = yield _Ask(model, rendered.messages(), query_agent.GeneratedQueries, _retry(ctx, "query"))
    except StructuredOutputError as exc:
        return {**update, "queries": [], **(_unfinished("query generation", exc) or {"failure": f"query generation failed: {exc}"})}
    except Exception as exc:  # the endpoint failed for good: reject this task, keep the run going
        return {**update, "queries": [], **(_unfinished("query generation", exc)
                                            or {"failure": f"query generation failed: {type(exc).__name__}: {exc}"})}
    if len(out.value.queries) != len(state["turns"]):
        return {**update, "queries": out.value.queries,
                "failure": f"query generation failed: {len(out.value.queries)} messages for {len(state['turns'])} turns"}
    return {**update, "queries": out.value.queries}

def calibrate(state: ChainState, runtime: Runtime[QueryGenContext]) -> dict[str, Any]:
    return _drive(_calibrate(state, _ctx(runtime)))

def _calibrate(state: ChainState, ctx: QueryGenContext):
    if state.get("failure") or state.get("unfinished"):
        return {}
    chain = _chain(state)
    queries = state["queries"]
    update: dict[str, Any] = {"tiers": {**state["tiers"], "refine": refine_agent.OFFLINE_TIER}}
    model = _model(ctx, "refine")
    if model is not None:
        rendered = refine_agent.calibrate_prompt(chain, queries, state["turns"],
                                                 ctx.prompt_versions.get("refine_agent/calibrate", "latest"))
        update = {"tiers": {**state["tiers"], "refine": "model"},
                  "prompts": state.get("prompts", []) + [rendered.ref.model_dump()],
                  "models": {**state.get("models", {}), "refine": model_name(model)}}
        try:
            out = yield _Ask(model, rendered.messages(), refine_agent.RefinedQueries, _retry(ctx, "refine"))
        except Exception as exc:
            return {**update, **(_unfinished("refinement", exc) or {"failure": f"refinement failed: {exc}"})}
        if len(out.value.queries) != len(queries):
            return {**update, "failure": f"refinement failed: {len(out.value.queries)} messages for {len(queries)} turns"}
        queries = out.value.queries
    names, params = refine_agent.tool_and_param_names(_tools(chain))
    report = refine_agent.check_leakage(chain, queries, state["turns"], names, params)
    # before any rollout: what the user says must determine every gold argument
    missing = determinacy.undetermined(chain, queries, state["turns"],
                                       lambda env, tool: load_env(env).manifest.tool(tool).input_schema)
    paraphrased = "model" in (update["tiers"].get("refine"), update["tiers"].get("query"))
    orders = determinacy.order_selectors(chain, missing) if paraphrased and not report.leaks else None
    if orders:  # a model paraphrased an order ("my most recent order"): the judge role may settle it
        settled, judged = yield from _judge_selectors(ctx, queries, orders)
        missing = [m for m in missing if m not in settled]
        if judged:
            update = {**update, "prompts": update.get("prompts", state.get("prompts", [])) + [judged["prompt"]],
                      "models": {**update.get("models", state.get("models", {})), "selector_judge": judged["model"]},
                      "tiers": {**update["tiers"], "selector_judge": "model"}}
    return {**update, "queries": queries, "leaks": report.leaks, "undetermined": missing}


def _judge_selectors(ctx: QueryGenContext, queries: list[str], orders: dict[str, Any]):
    """The order selectors the judge says the messages still convey (none without a judge model, or
    when it fails: the task is then rejected as undetermined, never accepted on a guess)."""
    model = _model(ctx, "judge")
    if model is None:
        return set(), None
    from envfactory.agents.judge import SelectorVerdict
    from envfactory.prompts.registry import default_registry
    items = list(orders.items())
    rendered = default_registry().render("judge/selectors", ctx.prompt_versions.get("judge/selectors", "latest"),
                                         messages=queries, selectors=[sel.text for _, sel in items])
    try:
        verdict = (yield _Ask(model, rendered.messages(), SelectorVerdict, _retry(ctx, "judge"))).value
    except Exception:
        return set(), None
    if len(verdict.conveyed) != len(items):
        return set(), None
    judged = {"prompt": rendered.ref.model_dump(), "model": model_name(model)}
    return {item for (item, _), ok in zip(items, verdict.conveyed) if ok}, judged

def roll_out(state: ChainState, runtime: Runtime[QueryGenContext]) -> dict[str, Any]:
    return _drive(_roll_out(state, _ctx(runtime)))

def _roll_out(state: ChainState, ctx: QueryGenContext):
    if state.get("failure") or state.get("leaks") or state.get("undetermined") or state.get("unfinished"):
        return {"rollouts": []}
    chain = _chain(state)
    envs = {n: load_env(n) for n in chain.envs}
    turns = _user_turns(chain, state)
    try:
        gold = _gold_reference(chain, envs)
    except GoldReplayError as exc:
        return {"rollouts": [{"error": f"gold replay failed: {exc}"}]}
    model = _model(ctx, "rollout")
    update: dict[str, Any] = {"tiers": {**state["tiers"], "rollout": solver.SOLVER_TIER if model is None else "model"}}
    system_prompt = DEFAULT_SYSTEM_PROMPT
    if model is not None:
        from envfactory.prompts.registry import default_registry
        service = "; ".join(load_env(n).manifest.description for n in chain.envs)
        rendered = default_registry().render("rollout_agent/system", ctx.prompt_versions.get("rollout_agent/system", "latest"),
                                             service=service)
        system_prompt = rendered.text.strip()
        update["prompts"] = state.get("prompts", []) + [rendered.ref.model_dump()]
        update["models"] = {**state.get("models", {}), "rollout": model_name(model)}
        if ctx.mode == "conv":
            from envfactory.agents import user_simulator
            user_model = _model(ctx, "user_simulator")
            update["tiers"]["user_simulator"] = "model" if user_model is not None else user_simulator.OFFLINE_TIER
    results = []
    for _ in range(max(1, ctx.rollouts)):
        try:
            if model is None:
                # the offline agent reads only the user's messages (never the gold calls)
                run = solver.solver_rollout(envs, [t.query for t in turns], system_prompt)
            else:
                simulator = None
                if ctx.mode == "conv":
                    from envfactory.agents import user_simulator
                    user_model = _model(ctx, "user_simulator")
                    simulator = (user_simulator.ModelUser(user_model, turns, ctx.prompt_versions,
                                                          retry=_retry(ctx, "user_simulator"))
                                 if user_model is not None else user_simulator.ScriptedUser(turns))
                in_worker = _worker_flag["in_worker"]
                run = yield _Await(lambda: rollout_agent.model_rollout(
                    envs, turns, model, system_prompt, ctx.max_steps, ctx.max_tokens, simulator,
                    sessions=_session_pools(envs, ctx.tools), inline_episodes=in_worker, retry=_retry(ctx, "rollout")))
        except Exception as exc:  # a failed model endpoint or loop: this rollout has no score
            results.append({"error": f"rollout failed: {type(exc).__name__}: {exc}",
                            **({"transient": True} if _unfinished("rollout", exc) else {})})
            continue
        try:
            reward = score_episodes(gold, run.episodes, n_malformed=run.malformed_calls, cfg=RewardConfig(tau=ctx.tau))
            results.append({"messages": [m.model_dump() for m in run.messages], "reward": reward.model_dump(),
                            "tier": run.tier, "stopped": run.stopped, "steps": run.steps, "tokens": run.tokens,
                            "state_diffs": run.turn_diffs,
                            "final_hashes": {n: ep.state_hash() for n, ep in run.episodes.items()}})
        finally:
            run.close()
    return {**update, "rollouts": results}

def verify(state: ChainState, runtime: Runtime[QueryGenContext]) -> dict[str, Any]:
    return _drive(_verify(state, _ctx(runtime)))

def _verify(state: ChainState, ctx: QueryGenContext):
    chain = _chain(state)
    rollouts = state.get("rollouts", [])
    unfinished = state.get("unfinished") or next((r["error"] for r in rollouts if r.get("transient")), None)
    if unfinished:  # no verdict: nothing is stored, the next run tries the task again
        return {"not_done": 1, "unfinished": unfinished}
    reason = None
    if state.get("failure"):
        reason = state["failure"]
    elif state.get("leaks"):
        reason = "leakage: " + "; ".join(state["leaks"])
    elif state.get("undetermined"):
        reason = "undetermined: " + ", ".join(state["undetermined"])
    elif rollouts and all("error" in r for r in rollouts):
        reason = "infrastructure: " + rollouts[0]["error"]
    scored = [r for r in rollouts if "reward" in r and r["reward"]["score"] is not None]
    passed = [r for r in scored if r["reward"]["score"] >= ctx.pass_threshold]
    pass_rate = len(passed) / len(scored) if scored else None
    if reason is None and not scored:
        reason = "infrastructure: no rollout could be scored"
    elif reason is None and not passed:
        best = max(scored, key=lambda r: r["reward"]["score"])
        reason = f"no rollout reached the gold state: best reward {best['reward']['score']:.2f}"
    kept = max(passed or scored or [{}], key=lambda r: r.get("reward", {}).get("score") or 0)
    for r in rollouts:
        if "error" in r and reason is None and not passed:
            reason = "infrastructure: " + r["error"]
    judge = (yield from _judge(ctx, kept.get("messages", []))) if reason is None else None
    record = TrajectoryRecord(
        key=state["key"], mode=ctx.mode,
        envs=[EnvRef(name=n, version=load_env(n).manifest.version, initial_state_hash=chain.initial_hashes[n],
                     final_state_hash=chain.final_hashes[n]) for n in chain.envs],
        tools=_tools(chain), system_prompt=DEFAULT_SYSTEM_PROMPT, turns=_user_turns(chain, state),
        messages=kept.get("messages", []),
        verification=Verification(accepted=reason is None, reason=reason, reward=kept.get("reward", {}),
                                  pass_rate=pass_rate, rollouts=len(rollouts), difficulty=_difficulty(pass_rate),
                                  judge=judge, tokens=sum(r.get("tokens", 0) for r in rollouts),
                                  state_diffs=kept.get("state_diffs") or None),
        provenance=Provenance(tiers=state["tiers"], models=state.get("models", {}), prompts=state.get("prompts", []),
                              seed=chain.seed, chain_id=chain.chain_id, code_version=CODE_VERSION))
    store = _store(ctx)
    if store is not None and not _worker_flag["in_worker"]:
        store.put(record)
    return {"records": [record.model_dump()]}

def _judge(ctx: QueryGenContext, messages: list[dict[str, Any]]):
    """A secondary opinion on an accepted trajectory; recorded, never deciding acceptance."""
    model = _model(ctx, "judge")
    if model is None or not messages:
        return None
    from envfactory.agents.judge import Verdict, judge_prompt
    rendered = judge_prompt(messages, ctx.prompt_versions.get("judge/trajectory", "latest"))
    try:
        verdict = (yield _Ask(model, rendered.messages(), Verdict, _retry(ctx, "judge"))).value
    except Exception as exc:  # a judge failure costs the signal, never the trajectory
        return {"error": f"{type(exc).__name__}: {exc}", "prompt": rendered.ref.model_dump()}
    return {**verdict.model_dump(), "model": model_name(model), "prompt": rendered.ref.model_dump()}

def _difficulty(pass_rate: float | None) -> str | None:
    if pass_rate is None:
        return None
    if pass_rate == 0:
        return "unsolved"
    return "easy" if pass_rate >= 0.75 else "medium" if pass_rate >= 0.4 else "hard"

def _user_turns(chain: GoldTrajectory, state: ChainState) -> list[UserTurn]:
    turns = []
    for query, indices in zip(state.get("queries") or [""] * len(state["turns"]), state["turns"]):
        calls = [chain.calls[i] for i in indices]
        turns.append(UserTurn(query=query, gold_calls=[GoldCallRef(env=c.env, name=c.tool, arguments=c.arguments,
                                                                   masked_arguments=c.masked_arguments,
                                                                   selectors={p: sel.model_dump() for p, sel in c.selectors.items()})
                                          for c in calls],
                              details={k: v for c in calls for k, v in query_agent.stated_values(c).items()}))
    return turns

def _tools(chain: GoldTrajectory) -> list[dict[str, Any]]:
    return [spec.openai_schema() for n in chain.envs for spec in load_env(n).tool_specs]
