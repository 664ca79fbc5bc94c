"""Flag values as `gage run` parses them, and grid lists."""

from __future__ import annotations

import math

import pytest

from gage_runs.errors import ConfigError
from gage_runs.flags import parse_flag_assigns, parse_flag_list, parse_flag_value

# parse_flag_value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("-1", -1),
        ("+1", 1),
        ("01", 1),
        ("1_000", 1000),
        ("1.5", 1.5),
        ("1.", 1.0),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("-.5e-2", -0.005),
    ],
)
def test_numbers(text, value):
    """Ints and floats parse as Python's `int()` and `float()` do."""
    parsed = parse_flag_value(text)
    assert parsed == value
    assert type(parsed) is type(value)


def test_special_floats():
    """`inf` and `nan` are floats too, since `float()` accepts them."""
    assert parse_flag_value("inf") == math.inf
    assert math.isnan(parse_flag_value("nan"))


@pytest.mark.parametrize(("text", "value"), [("true", True), ("false", False), ("null", None)])
def test_keywords(text, value):
    """`true`, `false` and `null` are the only keywords."""
    assert parse_flag_value(text) is value


@pytest.mark.parametrize("text", ["True", "FALSE", "None", "nil", "yes", "truex", "true false"])
def test_keyword_lookalikes_are_strings(text):
    """Keywords are lowercase and exact; anything else stays text."""
    assert parse_flag_value(text) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"1"', "1"),
        ("'1'", "1"),
        ('"true"', "true"),
        ('""', ""),
        ("''", ""),
        ("'a\"b'", 'a"b'),
        ('"a b"', "a b"),
        ('"a\\"b"', 'a\\"b'),
        ('"a\\\\"', "a\\\\"),
    ],
)
def test_quoted_strings(text, value):
    """A quoted value is its text; escapes are honoured for the end quote but kept."""
    assert parse_flag_value(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("hello", "hello"),
        ("hello world", "hello world"),
        ("[1,2]", "[1,2]"),
        ("0x10", "0x10"),
        ("1e", "1e"),
        ("a=b", "a=b"),
        ('"', '"'),
        ("'abc", "'abc"),
        ('"a\\"', '"a\\"'),
    ],
)
def test_other_text_is_a_string(text, value):
    """Anything else, including a quote never closed, is the text itself."""
    assert parse_flag_value(text) == value


def test_surrounding_whitespace_is_stripped():
    """Whitespace around a value doesn't count, quoted or not."""
    assert parse_flag_value("  3\t") == 3
    assert parse_flag_value(' "q" ') == "q"
    assert parse_flag_value("   ") == ""


@pytest.mark.parametrize("text", ['"a"b', '"a" b', '"a" "b"', "'a'b'"])
def test_text_after_closing_quote_is_an_error(text):
    """A quoted string must be the whole value, as in gage's grammar."""
    with pytest.raises(ConfigError, match="after the closing quote"):
        parse_flag_value(text)


def test_value_cannot_span_lines():
    """Gage's grammar matches a single line."""
    with pytest.raises(ConfigError, match="cannot span lines"):
        parse_flag_value("a\nb")


# parse_flag_assigns


def test_assigns():
    """Each `NAME=VALUE` gives a name and a parsed value."""
    assert parse_flag_assigns(["lr=0.1", "epochs=10", "name=run", "debug=true", "x="]) == {
        "lr": 0.1,
        "epochs": 10,
        "name": "run",
        "debug": True,
        "x": "",
    }


def test_assign_forms():
    """Spaces around `=`, dotted and dashed names, quoted names and `=` in values."""
    assert parse_flag_assigns(
        ["x = 1", "a.b=2", "a-b=3", "_c=4", '"a b"=5', "'k'=6", "y==1", "z=a=b", 'q= "s"']
    ) == {"x": 1, "a.b": 2, "a-b": 3, "_c": 4, "a b": 5, "k": 6, "y": "=1", "z": "a=b", "q": "s"}


def test_assign_keeps_gage_list_behaviour():
    """A list value stays a string here; grids are expanded by the submit layer."""
    assert parse_flag_assigns(["lr=[0.1,0.01]"]) == {"lr": "[0.1,0.01]"}


def test_later_assign_wins():
    """Repeating a name keeps the last value."""
    assert parse_flag_assigns(["x=1", "x=2"]) == {"x": 2}


@pytest.mark.parametrize(
    ("arg", "reason"),
    [
        ("lr", "expected NAME=VALUE"),
        ("", "expected NAME=VALUE"),
        ("=1", "the name is empty"),
        ('""=1', "the name is empty"),
        ("-x=1", "invalid name '-x'"),
        ("x y=1", "invalid name 'x y'"),
        ('x="a"b', "unexpected 'b' after the closing quote"),
        ("x=a\nb", "a flag cannot span lines"),
    ],
)
def test_malformed_assign(arg, reason):
    """A malformed item is a one-line ConfigError quoting it."""
    with pytest.raises(ConfigError) as excinfo:
        parse_flag_assigns(["ok=1", arg])
    msg = str(excinfo.value)
    assert msg == f"invalid flag {arg!r}: {reason}"
    assert "\n" not in msg


# parse_flag_list


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("[0.1,0.01]", [0.1, 0.01]),
        ("[32, 64]", [32, 64]),
        ("[1]", [1]),
        ("[ a , b ]", ["a", "b"]),
        ('[true, null, "x"]', [True, None, "x"]),
        ('["a,b", c]', ["a,b", "c"]),
        ("[it's, b]", ["it's", "b"]),
    ],
)
def test_grid_lists(value, items):
    """`[a,b,...]` gives its items, each parsed as a flag value."""
    assert parse_flag_list(value) == items


@pytest.mark.parametrize("value", ["0.1", "[]", "[ ]", "[1", "1]", "", 1, 0.5, True, None])
def test_not_a_grid(value):
    """Anything that isn't a non-empty bracketed string is not a grid."""
    assert parse_flag_list(value) is None


def test_grid_from_assign():
    """The submit layer expands grids from the values `parse_flag_assigns` gives."""
    flags = parse_flag_assigns(["lr=[0.1,0.01]", "batch=32"])
    assert {name: parse_flag_list(value) for name, value in flags.items()} == {
        "lr": [0.1, 0.01],
        "batch": None,
    }


@pytest.mark.parametrize(
    ("value", "msg"),
    [
        ("[1,,2]", "invalid list '[1,,2]': item 2 is empty"),
        ("[1,2,]", "invalid list '[1,2,]': item 3 is empty"),
        ('["a"b]', "invalid list '[\"a\"b]': item 1: unexpected 'b' after the closing quote"),
        ("[[1,2],3]", "invalid list '[[1,2],3]': nested lists are not supported"),
    ],
)
def test_malformed_grid(value, msg):
    """A bracketed value that isn't a usable list is a ConfigError."""
    with pytest.raises(ConfigError) as excinfo:
        parse_flag_list(value)
    assert str(excinfo.value) == msg
