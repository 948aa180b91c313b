"""`langgraph dev` serves the project's graphs; one QueryGen run goes through its HTTP API."""
from __future__ import annotations

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
    yield url
    os.killpg(proc.pid, 15)
    proc.wait(timeout=20)


def test_querygen_runs_over_http(dev_server, tmp_path):
    from langgraph_sdk import get_sync_client

    from envfactory.data.store import RecordStore
    client = get_sync_client(url=dev_server)
    assistants = client.assistants.search(graph_id="querygen")
    assert assistants, "querygen is not registered"
    thread = client.threads.create()
    store = tmp_path / "records.sqlite"
    result = client.runs.wait(thread["thread_id"], "querygen", input={"envs": ["library"], "n": 2, "seed": 5},
                              context={"rollouts": 1, "store_path": str(store)})
    assert result["summary"]["accepted"] == 2 and len(result["record_keys"]) == 2
    records = [RecordStore(store).get(k) for k in result["record_keys"]]  # the state holds keys; the store, records
    assert all(r.verification.accepted and r.provenance.tiers["rollout"].startswith("offline") for r in records)
    # the same run with worker processes started from inside the server: the same records
    thread = client.threads.create()
    by_workers = client.runs.wait(thread["thread_id"], "querygen", input={"envs": ["library"], "n": 2, "seed": 5},
                                  context={"rollouts": 1, "workers": 2})
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
    client = get_sync_client(url=dev_server)
    assert client.assistants.search(graph_id="envgen"), "envgen is not registered"
    thread = client.threads.create()
    result = client.runs.wait(thread["thread_id"], "envgen", input={"target": "a public library lending desk API"},
                              context={"catalog_dir": str(tmp_path / "catalog"), "workspace_dir": str(tmp_path / "work")})
    assert result["status"] == "accepted", result.get("reason")
    assert (Path(result["package_path"]) / "verified.json").is_file()
    assert result["attempts"][-1]["verdict"] == "PASS"
