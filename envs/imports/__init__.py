"""Bringing foreign code in: a Python class whose public methods are tools becomes a package.

- ``pyclass``: the ``pyclass`` backend (episodes over a class instance, JSON state, diffs);
  registered with the runtime here, so ``Environment.load`` opens such packages.
- ``importer``: ``envfactory envs import`` (introspection in the sandbox, manifest, starter tests).

May import ``envfactory.envs.runtime`` and ``envfactory.envs.sandbox``.
"""
from envfactory.envs.imports.pyclass import load_pyclass_environment
from envfactory.envs.runtime.environment import register_backend

register_backend("pyclass", load_pyclass_environment)
