"""Running untrusted code (model-written, imported or downloaded packages) in contained child processes.

- ``remote``: ``SandboxedEnvironment``, the Environment contract over one contained child server per
  environment (episodes live in the child; hashes, diffs, test queries and verdicts are computed here
  from the state bytes it sends); registers itself with the runtime (``Environment.open``).
- ``server``: the child server's entry point; ``contain``: the kernel containment it puts on before it
  reads the package (Landlock, seccomp, uid nobody, network namespace, rlimits, death with the parent).
- ``channel``: the length-framed channel between them (a cap of 256 MiB, one deadline per request).
- ``runner``: one-shot children (the pyclass importer's introspection and validation), same containment.
- ``child``: the one-shot child's entry point.

Imports ``envfactory.envs.runtime``; the children also import the task modules they run
(``envfactory.envs.validation``, ``envfactory.envs.imports``).
"""
