"""Maps the card's top-level folders to one import namespace, ``envfactory.<folder>``.

Metadata lives in pyproject.toml; only the package list is computed here, because
setuptools cannot express "every sub-package of these folders, renamed" declaratively.
"""
from setuptools import find_packages, setup

FOLDERS = ["agents", "graphs", "prompts", "envs", "data", "cli", "bench"]

packages, package_dir = [], {}
for folder in FOLDERS:
    package_dir[f"envfactory.{folder}"] = folder
    packages.append(f"envfactory.{folder}")
    packages += [f"envfactory.{folder}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=package_dir)
