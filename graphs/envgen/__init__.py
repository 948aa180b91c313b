"""EnvGen graph: research -> design -> code -> write tests -> test -> (repair -> [revise tests] -> test)* -> [review] -> accept | reject.

- research: the Search agent turns the target into a ResearchBrief (facts with source URLs + spec).
- design: checks the spec and fixes the package name.
- code: the Code agent writes the package (skeleton first; a model then adds rules and data).
- write_tests: the Test agent writes tests.json from the brief and tool schemas, not from the code.
- test: every attempt is written to its own folder and validated in a fresh sandbox process, so
  the code that is judged is always the code on disk (never a stale module).
- repair: the Code agent rewrites files from the Test agent's repair brief; cases it disputes (they
  expect what the brief does not support) go back to the Test agent, which keeps, fixes or drops each.
- review (``EnvGenContext.review``, off by default): a LangGraph interrupt before accepting; resume
  with approve, reject, or feedback that becomes another repair round's brief.

The graph enforces its own budget (repair rounds and model tokens), keeps the best attempt (most
tests passing, then most tool paths covered) and records why it rejects. Accepted packages land in
the catalog directory with their brief, sources, attempts, prompt versions and token cost.
Compiled without a checkpointer: ``langgraph dev`` injects one; the CLI passes a SQLite saver.

Modules (the LangGraph template split): ``context`` (EnvGenContext), ``state`` (graph state),
``nodes`` (the steps and routing), ``graph`` (the compiled graph).
"""
from envfactory.graphs.envgen.context import SETTINGS_KEY, EnvGenContext
from envfactory.graphs.envgen.graph import make_graph
from envfactory.graphs.envgen.nodes import RESULT_FILE, settings_fingerprint
from envfactory.graphs.envgen.state import EnvGenInput, EnvGenState

__all__ = ["EnvGenContext", "EnvGenInput", "EnvGenState", "RESULT_FILE", "SETTINGS_KEY", "make_graph",
           "settings_fingerprint"]
