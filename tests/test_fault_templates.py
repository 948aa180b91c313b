"""Malformed prompt templates raise ``PromptError`` naming the template (never a raw exception), a
render is bounded in time and size (nested loops stop, ``'a' * 10**9`` is refused before it is built),
and a declared variable that is None is an error unless the template declares it optional."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from envfactory.prompts.registry import (FrontMatterError, PromptError, PromptRegistry, PromptRenderError,
                                         PromptVariableError, default_registry)

FRONT = "---\nid: faults/{name}\nversion: 1\ndescription: a malformed template\ninput_variables:\n  - name: x\n    description: a value\n---\n"


def _registry(tmp_path: Path, name: str, content: str | bytes) -> PromptRegistry:
    folder = tmp_path / "faults" / name
    folder.mkdir(parents=True)
    data = content.encode() if isinstance(content, str) else content
    (folder / "v1.md.j2").write_bytes(data)
    return PromptRegistry([tmp_path])


BODIES = [  # (name, body, error class, what the message says)
    ("div_zero", "{{ 1 / 0 }}", PromptRenderError, "failed at line 1: ZeroDivisionError"),
    ("str_plus_int", "ok\n{{ 'a' + 1 }}", PromptRenderError, "failed at line 2: TypeError"),
    ("unsafe_attribute", "{{ x.__class__ }}", PromptRenderError, "SecurityError: access to attribute '__class__'"),
    ("include", "{% include 'other.j2' %}", PromptRenderError, "TypeError: no loader"),
    ("extends", "{% extends 'base.j2' %}", PromptRenderError, "TypeError: no loader"),
    ("import", "{% import 'm.j2' as m %}", PromptRenderError, "TypeError: no loader"),
    ("unknown_test", "{% if x is frobbed %}{% endif %}", PromptRenderError, "No test named 'frobbed'"),
    ("recursive_macro", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", PromptRenderError, "RecursionError"),
    ("call_a_dict", "{{ x() }}", PromptRenderError, "'dict' object is not callable"),
    ("empty_cycle", "{% for i in [1] %}{{ loop.cycle() }}{% endfor %}", PromptRenderError, "no items for cycling"),
    ("wordwrap_zero", "{{ 'a b' | wordwrap(0) }}", PromptRenderError, "invalid width 0"),
    ("sum_of_mixed", "{{ [1, 'a'] | sum }}", PromptRenderError, "unsupported operand"),
    ("sort_of_mixed", "{{ [1, 'a'] | sort }}", PromptRenderError, "'<' not supported"),
    ("slice_zero", "{{ [1, 2] | slice(0) | list }}", PromptRenderError, "ZeroDivisionError"),
    ("round_method", "{{ 1.5 | round(2, 'sideways') }}", PromptRenderError, "method must be common, ceil or floor"),
    ("unclosed_for", "{% for a in x %}", FrontMatterError, "template syntax error at line 1"),
    ("unknown_filter", "{{ x | frobnicate }}", FrontMatterError, "No filter named 'frobnicate'"),
    ("undeclared", "{{ y }}", PromptVariableError, "'y' is undefined"),
    # bounds: each of these hung for minutes or allocated gigabytes
    ("nested_loops", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     PromptRenderError, "rendering stopped: more than 1000000 loop steps"),
    ("nested_loops_output", "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
     PromptRenderError, "rendering stopped"),
    ("string_times_a_billion", "{{ 'a' * 10**9 }}", PromptRenderError, "'*' would build 1000000000 items"),
    ("list_times_a_billion", "{{ ['a'] * 10**9 }}", PromptRenderError, "'*' would build"),
    ("huge_power", "{{ 7 ** (10 ** 7) }}", PromptRenderError, "'**' would build a number"),
    ("center_a_billion", "{{ 'a' | center(10**9) }}", PromptRenderError, "filter 'center' was given 1000000000"),
    ("indent_a_billion", "{{ 'a\nb' | indent(10**9) }}", PromptRenderError, "filter 'indent' was given"),
    ("format_width", "{{ '%*d' | format(10**9, 1) }}", PromptRenderError, "filter 'format' was given"),
    ("literal_width", "{{ '%0999999999d' % 1 }}", PromptRenderError, "a width or precision of a million or more"),
    ("method_width", "{{ 'a'.ljust(10**9) }}", PromptRenderError, "was given 1000000000"),
    ("str_format_width", "{{ '{:>999999999}'.format(1) }}", PromptRenderError, "str.format"),
    ("big_range", "{{ range(10**9) | list }}", PromptRenderError, "was given 1000000000"),
    ("doubling", "{% set s = namespace(t='ab') %}{% for i in range(40) %}{% set s.t = s.t ~ s.t %}{% endfor %}{{ s.t }}",
     PromptRenderError, "'~' would build more than"),
    ("join_of_many", "{{ (['x' * 100000] * 1000) | join }}", PromptRenderError, "filter 'join' would build"),
    ("lipsum", "{{ lipsum(100000) }}", PromptVariableError, "'lipsum' is undefined"),
]


@pytest.mark.parametrize("name,body,error,says", BODIES, ids=[b[0] for b in BODIES])
def test_a_malformed_template_raises_a_prompt_error_that_names_it(tmp_path, name, body, error, says):
    registry = _registry(tmp_path, name, FRONT.format(name=name) + body)
    start = time.monotonic()
    with pytest.raises(error) as err:
        registry.render(f"faults/{name}", x={"a": 1})
    assert time.monotonic() - start < 10
    assert str(err.value).startswith(f"faults/{name}@v1: ") and says in str(err.value), str(err.value)


FILES = [
    ("not_utf8", b"---\nid: faults/not_utf8\nversion: 1\ndescription: d\n---\n\xff", "is not UTF-8 text (byte 54)"),
    ("declared_twice", "---\nid: faults/declared_twice\nversion: 1\ndescription: d\ninput_variables: [x, x]\n---\n{{ x }}",
     "front matter: Value error, input_variables declares x more than once"),
    ("python_tag", "---\nid: !!python/object/apply:os.system ['true']\nversion: 1\ndescription: d\n---\nbody",
     "front matter is not valid YAML"),
    ("no_front_matter", "just a body", "no YAML front matter"),
]


@pytest.mark.parametrize("name,content,says", FILES, ids=[f[0] for f in FILES])
def test_a_malformed_template_file_raises_a_prompt_error(tmp_path, name, content, says):
    registry = _registry(tmp_path, name, content)
    with pytest.raises(FrontMatterError, match="prompt template .*v1.md.j2") as err:
        registry.render(f"faults/{name}", x=1)
    assert says in str(err.value), str(err.value)


def test_a_byte_order_mark_is_not_part_of_the_front_matter(tmp_path):
    registry = _registry(tmp_path, "bom", "\ufeff" + FRONT.format(name="bom") + "value {{ x }}")
    assert registry.render("faults/bom", x=3).text == "value 3"


def test_none_for_a_declared_variable_is_an_error(tmp_path):
    with pytest.raises(PromptVariableError, match=r"rollout_agent/system@v1: variable\(s\) service are None"):
        default_registry().render("rollout_agent/system", service=None)
    assert "assistant for a library" in default_registry().render("rollout_agent/system", service="a library").text
    optional = FRONT.format(name="opt").replace("    description: a value\n", "    description: a value\n    optional: true\n")
    registry = _registry(tmp_path, "opt", optional + "{% if x is none %}nothing{% else %}{{ x }}{% endif %}")
    assert registry.render("faults/opt", x=None).text == "nothing"


def test_released_templates_render_as_before_within_the_bounds():
    """A loop over a few thousand items and a long prompt are far inside the bounds."""
    files = {f"file{i}.py": "x = 1\n" * 2000 for i in range(20)}  # ~240 kB of code in the prompt
    rendered = default_registry().render("code_agent/repair", report="a report", files=files)
    assert len(rendered.text) > 200_000 and "file19.py" in rendered.text


def test_the_lint_raises_a_prompt_error_for_broken_syntax(tmp_path):
    registry = _registry(tmp_path, "lint", FRONT.format(name="lint") + "{% for %}")
    with pytest.raises(PromptError, match="template syntax error"):
        registry.undeclared_in_body(registry.get("faults/lint"))


def test_a_render_stops_at_its_deadline():
    from envfactory.prompts.bounded import BoundedSandbox, RenderLimitError, render_bounded
    slow = BoundedSandbox().from_string("{% for i in range(900) %}{% for j in range(900) %}{{ (i * j) | string | length }}"
                                        "{% endfor %}{% endfor %}")
    start = time.monotonic()
    with pytest.raises(RenderLimitError, match="rendering took more than 0.05 s"):
        render_bounded(slow, {}, seconds=0.05)
    assert time.monotonic() - start < 2
