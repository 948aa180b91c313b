"""The deterministic skeleton generator (EnvGen's offline tier): an ``ApiSpec`` in, a complete
package that passes validation out.

- ``spec``: ``ApiSpec``, the structured design the Search agent produces.
- ``plan``: conventions and feasibility of each operation.
- ``schema`` (DDL, JSON Schemas, manifest), ``seed`` (rows), ``codegen`` (tools.py),
  ``testgen`` (tests.json from the spec, never from the code).
- ``package``: ``generate_package``, ``quality_gaps``, ``write_package``.

May import ``envfactory.envs.runtime`` and ``envfactory.envs.validation``.
"""
from envfactory.envs.skeleton.package import generate_package, quality_gaps, write_package
from envfactory.envs.skeleton.testgen import generate_tests

__all__ = ["generate_package", "generate_tests", "quality_gaps", "write_package"]
