"""`langgraph dev` serves the project's graphs: their forms (input and context schemas), runs over its
HTTP API into the workspace's record store, and our errors shown to the client."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory):
    exe = Path(sys.executable).parent / "langgraph"
    if not exe.exists():
        pytest.fail("langgraph-cli[inmem] is not installed (it is a dev dependency)")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("lgdev")
    shutil.copy(ROOT / "langgraph.json", workdir / "langgraph.json")  # graphs by module: the installed package
    env = {**os.environ, "LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([str(exe), "dev", "--no-browser", "--port", str(port), "--host", "127.0.0.1",
                             "--config", "langgraph.json", "--no-reload"], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail("langgraph dev exited:\n" + proc.stdout.read()[-3000:])
        try:
            if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("langgraph dev did not become ready in 120 s")
    yield url, Path(env["ENVFACTORY_WORKSPACE"])
    os.killpg(proc.pid, 15)
    proc.wait(timeout=20)


def test_querygen_runs_over_http(dev_server, tmp_path):
    from langgraph_sdk import get_sync_client

    from envfactory.data.store import RecordStore
    url, workspace = dev_server
    client = get_sync_client(url=url)
    assistants = client.assistants.search(graph_id="querygen")
    assert assistants, "querygen is not registered"
    thread = client.threads.create()
    result = client.runs.wait(thread["thread_id"], "querygen", input={"envs": ["library"], "n": 2, "seed": 5},
                              context={"rollouts": 1})
    assert result["summary"]["accepted"] == 2 and len(result["record_keys"]) == 2
    # stored in the server's workspace by default, where `envfactory export` finds them
    store = RecordStore(workspace / "records.sqlite", create=False)
    records = [store.get(k) for k in result["record_keys"]]  # the state holds keys; the store, records
    assert all(r.verification.accepted and r.provenance.tiers["rollout"].startswith("offline") for r in records)
    # the same run with worker processes started from inside the server (no store: made again): the same records
    thread = client.threads.create()
    by_workers = client.runs.wait(thread["thread_id"], "querygen", input={"envs": ["library"], "n": 2, "seed": 5},
                                  context={"rollouts": 1, "workers": 2, "store_path": None})
    assert by_workers["summary"]["accepted"] == 2, by_workers
    assert sorted(by_workers["record_keys"]) == sorted(result["record_keys"])
    # and on Ray actors: the server starts a local Ray instance (loopback only) from inside a run
    thread = client.threads.create()
    by_ray = client.runs.wait(thread["thread_id"], "querygen", input={"envs": ["library"], "n": 2, "seed": 5},
                              context={"rollouts": 1, "executor": "ray"})
    assert by_ray["summary"]["accepted"] == 2, by_ray
    assert sorted(by_ray["record_keys"]) == sorted(result["record_keys"])


def test_envgen_synthesizes_over_http(dev_server, tmp_path):
    from langgraph_sdk import get_sync_client
    client = get_sync_client(url=dev_server[0])
    assert client.assistants.search(graph_id="envgen"), "envgen is not registered"
    thread = client.threads.create()
    result = client.runs.wait(thread["thread_id"], "envgen", input={"target": "a public library lending desk API"},
                              context={"catalog_dir": str(tmp_path / "catalog"), "workspace_dir": str(tmp_path / "work")})
    assert result["status"] == "accepted", result.get("reason")
    assert (Path(result["package_path"]) / "verified.json").is_file()
    assert result["attempts"][-1]["verdict"] == "PASS"


def test_studio_gets_forms_for_input_and_context(dev_server):
    from langgraph_sdk import get_sync_client
    client = get_sync_client(url=dev_server[0])
    for graph, inputs, context in [("querygen", {"envs", "n", "seed"}, {"rollouts", "mode", "store_path", "prompts_dir"}),
                                   ("querygen_chain", {"chain"}, {"rollouts"}),
                                   ("envgen", {"target", "name"}, {"max_rounds", "review", "catalog_dir"})]:
        [assistant] = client.assistants.search(graph_id=graph)
        schemas = client.assistants.get_schemas(assistant["assistant_id"])
        assert schemas["input_schema"] is not None, graph
        assert inputs <= set(schemas["input_schema"]["properties"]), graph
        props = schemas["context_schema"]["properties"]
        assert context <= set(props) and all(p.get("description") for p in props.values()), graph
    [assistant] = client.assistants.search(graph_id="querygen")
    rollouts = client.assistants.get_schemas(assistant["assistant_id"])["context_schema"]["properties"]["rollouts"]
    assert rollouts["default"] == 2 and rollouts["minimum"] == 1 and rollouts["type"] == "integer"


@pytest.mark.parametrize("inputs, context, message", [
    ({"envs": ["library"], "n": 1}, {"rollouts": 0}, "context key 'rollouts' must be at least 1, got 0"),
    ({"envs": ["library"], "n": 1}, {"mode": "bogus"}, "context key 'mode' must be one of 'single', 'conv'"),
    ({"envs": ["atlantis"], "n": 1}, {"rollouts": 1}, "is neither a folder nor a bundled environment"),
])
def test_our_errors_reach_the_client_with_their_message(dev_server, inputs, context, message):
    from langgraph_sdk import get_sync_client
    client = get_sync_client(url=dev_server[0])
    thread = client.threads.create()
    run = client.runs.create(thread["thread_id"], "querygen", input=inputs, context=context)
    client.runs.join(thread["thread_id"], run["run_id"])
    run = client.runs.get(thread["thread_id"], run["run_id"])
    assert run["status"] == "error", run
    state = client.threads.get(thread["thread_id"])
    shown = json.dumps(state.get("error") or state, default=str)
    assert message in shown and "An internal error occurred" not in shown, shown[:2000]
