"""``envfactory report``: a static HTML site of a workspace (environments, trajectories, synthesis).

- ``collect``: reads the workspace (catalog packages, the record store, EnvGen's runs).
- ``views``: records shaped for pages (the filterable index row, the turn-by-turn view).
- ``plots``: small matplotlib plots as inline SVG.
- ``site``: renders the Jinja2 templates into the site (``build_report``).

May import ``envfactory.data`` and ``envfactory.envs`` (the tool graph's drawing comes from
``envfactory.envs.chains.drawing``).
"""
from envfactory.data.report.site import build_report

__all__ = ["build_report"]
