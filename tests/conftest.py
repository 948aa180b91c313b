"""Shared fixtures. Tests never touch the network: sockets to anything but loopback are refused."""
from __future__ import annotations

import socket

import pytest

_real_connect = socket.socket.connect


def _loopback_only(self, address, *args, **kwargs):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1")) or self.family == socket.AF_UNIX:
        return _real_connect(self, address, *args, **kwargs)
    raise RuntimeError(f"tests must not touch the network (tried to connect to {address!r})")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)
    yield


@pytest.fixture(autouse=True, scope="session")
def _own_cache_dir(tmp_path_factory):
    """The tool-graph cache of this test session, not the user's (subprocesses inherit it too)."""
    import os
    os.environ["ENVFACTORY_CACHE_DIR"] = str(tmp_path_factory.mktemp("envfactory-cache"))
    yield


@pytest.fixture(autouse=True, scope="session")
def _session_workspace(tmp_path_factory):
    """Nothing a test runs writes into the checkout's ./out (subprocesses inherit the variable)."""
    import os
    os.environ["ENVFACTORY_WORKSPACE"] = str(tmp_path_factory.mktemp("workspace-session"))
    yield


@pytest.fixture(autouse=True, scope="module")
def _module_workspace(tmp_path_factory):
    """A fresh workspace per test module (its module-scoped fixtures run here) ..."""
    import os
    previous = os.environ["ENVFACTORY_WORKSPACE"]
    os.environ["ENVFACTORY_WORKSPACE"] = str(tmp_path_factory.mktemp("workspace-module"))
    yield
    os.environ["ENVFACTORY_WORKSPACE"] = previous


@pytest.fixture(autouse=True)
def _test_workspace(tmp_path_factory, monkeypatch):
    """... and per test: graphs store their records in the workspace by default, so a test starts
    with an empty store unless it shares one on purpose."""
    from envfactory.envs.runtime.workspace import Workspace
    folder = tmp_path_factory.mktemp("workspace")
    monkeypatch.setenv("ENVFACTORY_WORKSPACE", str(folder))
    return Workspace.at(folder)
@pytest.fixture(autouse=True)
def _own_config_dir(tmp_path_factory, monkeypatch):
    """A trust store of this test alone, never the user's (subprocesses inherit it too)."""
    monkeypatch.setenv("ENVFACTORY_CONFIG_DIR", str(tmp_path_factory.mktemp("envfactory-config")))
    yield


@pytest.fixture(scope="session")
def library_env():
    from envfactory.envs import Environment
    return Environment.load("library")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance for one test module: ``ray.init(num_cpus=2, include_dashboard=False)`` with every
    port on loopback; the module's actor pools and the instance stop after it."""
    ray = pytest.importorskip("ray", reason="the ray extra is part of dev")
    from envfactory.graphs.querygen import ray_executor
    ray_executor.start_local(num_cpus=2)
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    yield ray
    ray_executor.shutdown_ray_executor()
    ray.shutdown()
