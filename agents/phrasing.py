"""The words the offline tier uses for tools, parameters and references: the template verbalizer
writes them, the determinacy check and the rule-based solver read them (one vocabulary, one place)."""
from __future__ import annotations

import re
from functools import lru_cache

_VERB_FIXES = {"get": "look up", "list": "list", "search": "search for", "find": "find"}


def words(identifier: str) -> str:
    return identifier.replace("_", " ").strip()


@lru_cache(maxsize=4096)
def tool_phrase(tool: str) -> str:
    """The words the verbalizer asks for a tool with ("look up order" for get_order)."""
    verb, _, rest = tool.partition("_")
    verb = _VERB_FIXES.get(verb, verb)
    return f"{verb} {words(rest)}".strip() if rest else verb


@lru_cache(maxsize=4096)
def param_phrase(param: str) -> str:
    """The words the verbalizer states a parameter with ("customer number" for customer_id)."""
    return words(param).replace(" id", " number")


@lru_cache(maxsize=4096)
def selector_noun(param: str) -> str:
    """What a parameter refers to ("lot" for lot_id, "depends on" for depends_on_id)."""
    return words(re.sub(r"_ids?$", "", param)) or words(param)


def reference_clause(param: str, tool: str) -> str:
    """Which earlier result a value comes from, when the latest result would give another one
    ("using the member from the find member step")."""
    return f"using the {selector_noun(param)} from the {tool_phrase(tool)} step"


REFERENCE = re.compile(r"using the (?P<noun>[a-z0-9][a-z0-9 ]*?) from the (?P<phrase>[a-z0-9][a-z0-9 ]*?) step")
