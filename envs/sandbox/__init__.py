"""Running untrusted code (model-written or imported packages) in a separate, limited process.

- ``runner``: starts the child with resource limits, a private workspace and a fresh network
  namespace where allowed, and reads its result.
- ``child``: the entry point inside the sandbox; executes the validation or introspection task.

``runner`` imports nothing from ``envfactory``; ``child`` imports the task modules it runs
(``envfactory.envs.validation``, ``envfactory.envs.imports``).
"""
