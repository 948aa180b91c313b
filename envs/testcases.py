"""Old path of ``envfactory.envs.validation.testcases``, kept because released prompt templates
(test_agent/write_tests v2, test_agent/revise_tests v1) name ``envfactory.envs.testcases.TestSuite`` as
their output schema, and a released template never changes. New versions name the new path."""
from envfactory.envs.validation.testcases import TestSuite  # noqa: F401
