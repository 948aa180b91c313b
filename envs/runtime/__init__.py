"""The episode runtime: the one contract used by synthesis, rollouts, rewards and exports.

- ``environment``: ``Environment`` (a loaded package) and ``Episode`` (an isolated in-memory SQLite
  copy of its state: call, reset, snapshot/restore, diff, hash); backends for other package kinds
  register here (``register_backend``).
- ``state``: change tracking, canonical hashes, cell-level diffs, snapshots.
- ``manifest`` (env.json), ``context`` (what a tool function receives), ``errors``.
- ``arguments`` (what any tool accepts, whatever its schema allows), ``package_checks`` (seed rows and
  volatile columns), ``snapshot_check`` (is this a snapshot of this environment), ``pyparse`` (``ast.parse``
  one thread at a time).
- ``packages``: where packages are found (folders, the bundled catalog, the workspace's catalog, registered
  export folders, ``ENVFACTORY_CATALOG_PATH``).
- ``workspace``: the folder every command shares (catalog, record store, exports, synthesis attempts).
- ``trust``: which packages may run their code in this process.
- ``cache`` (the process's loaded environments), ``lru`` (a small bounded cache).

Imports nothing else from ``envfactory``: every other sub-package builds on this one.
"""
