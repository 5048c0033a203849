"""Client JSON within limits: depth measured without recursion, numbers bounded."""

from __future__ import annotations

import time

import pytest

from daemon.api.json_input import MAX_JSON_DEPTH, json_depth, parse_json
from daemon.shared.errors import MalformedInput, ValidationFailed


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('"[[["', 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["\\"[[", ["]]\\\\"]]', 2),  # escaped quotes and backslashes inside strings
        ("[[]][[[]]]", 3),
        ('["unterminated [[[[', 1),
    ],
)
def test_depth(text, depth):
    assert json_depth(text) == depth


def test_the_limit_is_inclusive():
    assert parse_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(MalformedInput, match="nested deeper than 64"):
        parse_json("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))


def test_far_too_deep_input_is_refused_without_recursion():
    with pytest.raises(MalformedInput, match="nested deeper"):
        parse_json(b"[" * 1_000_000)


def test_hostile_strings_are_scanned_in_linear_time():
    # Many unterminated-looking quotes: a backtracking scan would be quadratic.
    started = time.perf_counter()
    with pytest.raises(MalformedInput):
        parse_json('"\\' * 500_000)
    with pytest.raises(MalformedInput):
        parse_json('["' + '\\"' * 500_000)
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("number", ["1" * 101, "-" + "1" * 101, "1e999", "NaN", "-Infinity"])
def test_numbers_out_of_range_name_their_field(number):
    with pytest.raises(ValidationFailed) as refused:
        parse_json('{"a": [0, {"b": ' + number + "}]}", field="metadata")
    assert refused.value.errors[0]["field"] == "metadata.a.1.b"


def test_numbers_in_range_are_kept():
    assert parse_json('[12345678901234567890, -1.5e300, 1e-400, "1e999"]') == [
        12345678901234567890,
        -1.5e300,
        0.0,
        "1e999",
    ]


def test_not_json_is_malformed():
    with pytest.raises(MalformedInput, match="not valid JSON"):
        parse_json(b"\xff\xfe{")
    with pytest.raises(MalformedInput, match="metadata is not valid JSON"):
        parse_json("{", what="metadata")
