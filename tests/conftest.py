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
