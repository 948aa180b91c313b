"""Checks of a package's parts that the manifest's own validation cannot see: seed rows (shape and
values SQLite can store) and volatile columns (tables and columns the schema creates).

Each failure is an ``EnvironmentPackageError`` that names the file, the table, the row or column and
what to do, instead of whatever a library raised on the way (an AttributeError from sqlite-utils for
a row that is a string, an OverflowError from SQLite for a 70-bit integer).
"""
from __future__ import annotations

from typing import Any

from envfactory.envs.runtime.arguments import INT_MAX, INT_MIN
from envfactory.envs.runtime.errors import EnvironmentPackageError


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"),
                       (list, "a list"), (dict, "an object")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def check_seed(package: str, seed_file: str, seed: dict[str, Any]) -> None:
    """Every table maps to a list of row objects whose integers fit SQLite's 64 bits."""
    for table, rows in seed.items():
        if not isinstance(rows, list):
            raise EnvironmentPackageError(package, f"{seed_file}: table {table!r} must hold a list of row objects, "
                                                   f"got {json_type(rows)}")
        for n, row in enumerate(rows, 1):
            if not isinstance(row, dict):
                raise EnvironmentPackageError(package, f"{seed_file}: row {n} of table {table!r} is {json_type(row)}; "
                                                       f"a row is an object of column values")
            for column, value in row.items():
                if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
                    raise EnvironmentPackageError(package, f"{seed_file}: row {n} of table {table!r}: column {column!r} "
                                                           f"holds an integer beyond 64 bits, which SQLite cannot store")


def check_volatile_columns(package: str, volatile: dict[str, list[str]], columns: dict[str, tuple[str, ...]]) -> None:
    """``volatile_columns`` names only tables and columns the schema creates (a typo would silently
    leave a timestamp in every hash and diff)."""
    for table, names in volatile.items():
        if table not in columns:
            raise EnvironmentPackageError(package, f"env.json: volatile_columns names table {table!r}, which the schema "
                                                   f"does not create (tables: {', '.join(sorted(columns))})")
        unknown = [c for c in names if c not in columns[table]]
        if unknown:
            raise EnvironmentPackageError(package, f"env.json: volatile_columns of table {table!r} names column(s) "
                                                   f"{', '.join(map(repr, unknown))}, which it does not have "
                                                   f"(columns: {', '.join(columns[table])})")
