"""Bringing foreign code in: a Python class whose public methods are tools becomes a package.

- ``pyclass``: the ``pyclass`` backend (episodes over a live copy of the class, its JSON view, diffs);
  registered with the runtime here, so ``Environment.load`` opens such packages.
- ``source``: running the source (a file minus ``mcp.run()``, a module from its import root, MCP wrappers).
- ``arguments``: arguments checked the way the source checks them.
- ``determinism``: ``random``, ``uuid`` and the clock seeded per episode.
- ``tracking``: what a call changed, at the cost of the rows it reached.
- ``explore``: reads and writes by effect, and tests, from calls made in the sandbox.
- ``importer``: ``envfactory envs import`` (introspection and exploration in the sandbox, the package).

May import ``envfactory.envs.runtime`` and ``envfactory.envs.sandbox``.
"""
from envfactory.envs.imports.pyclass import load_pyclass_environment
from envfactory.envs.runtime.environment import register_backend

register_backend("pyclass", load_pyclass_environment)
