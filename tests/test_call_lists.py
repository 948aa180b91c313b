"""The one parser of the gold call lists per-turn rows carry (trl gold_calls / prefix_calls, verl ground_truth)."""
from __future__ import annotations

import pytest

from envfactory.data.exports.calls import parse_calls


@pytest.mark.parametrize("value, reason", [
    ("{", "not JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
    (None, "got null"),
    ("null", "got null"),
    ('{"name": "get_book"}', "got an object"),
    ('["get_book"]', "call 1 is a string, not an object"),
    ('[{"name": "get_book", "arguments": {}}, {"arguments": {"book_id": 1}}]', "call 2: name: Field required"),
    ('[{"name": "get_book", "arguments": [1]}]', "call 1 (get_book): arguments: Input should be a valid dictionary"),
    ('[{"name": "get_book", "arguments": {}, "masked": "book_id"}]', "call 1 (get_book): masked: Input should be a valid list"),
    (b"\xff", "bytes that are not UTF-8 text"),
])
def test_a_bad_call_list_says_which_column_and_what_is_wrong(value, reason):
    with pytest.raises(ValueError) as caught:
        parse_calls(value, "gold_calls")
    assert str(caught.value) == f"gold_calls must be a JSON list of calls: {reason}"


def test_text_bytes_and_decoded_lists_read_the_same_and_null_fields_read_as_absent():
    text = '[{"name": "renew_loan", "arguments": {"loan_id": 3}, "masked": ["loan_id"], "env": "library"}, {"name": "list_books"}]'
    calls = parse_calls(text, "gold_calls")
    assert [(c.name, c.arguments, c.masked, c.env) for c in calls] == [
        ("renew_loan", {"loan_id": 3}, ["loan_id"], "library"), ("list_books", {}, [], None)]
    assert parse_calls(text.encode(), "x") == calls == parse_calls([c.model_dump() for c in calls], "x")
    # Arrow reads keys a row lacks as null
    assert parse_calls([{"name": "list_books", "arguments": None, "masked": None, "env": None}], "x") == calls[1:]
    assert parse_calls("[]", "prefix_calls") == []
