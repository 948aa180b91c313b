"""Checking that an environment package behaves as its tests say.

- ``validate``: the sandboxed validation of a package and its ``verified.json`` record.
- ``testcases``: the tests.json format and its runner (steps, subset matching, state checks).
- ``quality``: the catalog's quality bar (coverage, chain depth, contamination).
- ``contamination``: overlap with public evaluation benchmarks.

May import ``envfactory.envs.runtime``, ``envfactory.envs.sandbox`` and ``envfactory.envs.imports``.
"""
