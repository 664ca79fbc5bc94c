"""gage-submit's flags: parsed as Gage parses them, checked against the op's config, and grids."""

from __future__ import annotations

import pytest

from gage_queue.durations import DurationError, parse_duration
from gage_runs.errors import ConfigError
from gage_runs.flags import check_flags
from gage_submit.flags import expand_grid, format_flags, grid_size, parse_flags

CONFIG = {"lr": 0.1, "batch": 32, "optimizer": "adam", "debug": False, "seed": None}


def test_values_parse_as_gage_parses_them():
    """Numbers, keywords and quoted strings follow Gage's flag grammar; each is a one-value axis."""
    assert parse_flags(["lr=0.01", "batch=64", "debug=true", "optimizer='sgd'", "seed=null"]) == {
        "lr": [0.01],
        "batch": [64],
        "debug": [True],
        "optimizer": ["sgd"],
        "seed": [None],
    }


def test_a_later_assignment_wins():
    """`lr=1 lr=2` keeps the last value, as `gage run` does."""
    assert parse_flags(["lr=1", "lr=2"]) == {"lr": [2]}


def test_list_values_are_grid_axes():
    """An unquoted `[a,b]` is a list of flag values, each parsed on its own."""
    assert parse_flags(["lr=[0.1, 0.01]", "optimizer=[adam,'sgd',\"a,b\"]"]) == {
        "lr": [0.1, 0.01],
        "optimizer": ["adam", "sgd", "a,b"],
    }


def test_a_quoted_list_is_a_string():
    """Quoting a list passes it as one string value, which is how to send a literal `[a,b]`."""
    assert parse_flags(["optimizer='[a,b]'"]) == {"optimizer": ["[a,b]"]}
    assert parse_flags(['optimizer="[a,b]"']) == {"optimizer": ["[a,b]"]}


def test_an_empty_list_is_not_a_grid():
    """`[]` stays the string `'[]'` (and then fails the type check for a number)."""
    grid = parse_flags(["lr=[]"])
    assert grid == {"lr": ["[]"]}
    with pytest.raises(ConfigError, match="expected a number"):
        check_flags(grid, CONFIG, "train")


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("lr", "invalid flag 'lr': expected NAME=VALUE"),
        ("=1", "the name is empty"),
        ("lr='0.1'x", "unexpected 'x' after the closing quote"),
        ("lr=[1,,2]", "item 2 is empty"),
        ("lr=[[1],2]", "nested lists are not supported"),
    ],
)
def test_malformed_flags_are_one_line_errors(arg, message):
    """A flag Gage's grammar rejects is a ConfigError naming the flag."""
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as e:
        parse_flags([arg])
    assert "\n" not in str(e.value)


def test_grid_is_every_combination_last_axis_fastest():
    """Two axes of two values make four runs, in the order the flags were given."""
    grid = parse_flags(["lr=[0.1,0.01]", "batch=[32,64]", "optimizer=sgd"])
    assert grid_size(grid) == 4
    assert expand_grid(grid) == [
        {"lr": 0.1, "batch": 32, "optimizer": "sgd"},
        {"lr": 0.1, "batch": 64, "optimizer": "sgd"},
        {"lr": 0.01, "batch": 32, "optimizer": "sgd"},
        {"lr": 0.01, "batch": 64, "optimizer": "sgd"},
    ]


def test_no_flags_is_one_run_of_the_project_values():
    """Without flags the grid is one empty assignment: the run uses the project's config."""
    assert grid_size({}) == 1
    assert expand_grid({}) == [{}]


def test_an_unknown_flag_lists_the_valid_ones():
    """A name the op's config lacks is an error with a suggestion and every valid name."""
    with pytest.raises(ConfigError) as e:
        check_flags({"lrr": [1]}, CONFIG, "train")
    assert str(e.value) == (
        "unknown flag 'lrr' for operation 'train' (did you mean 'lr'?);"
        " valid flags: batch, debug, lr, optimizer, seed"
    )


def test_an_op_without_config_takes_no_flags():
    """Flags for an op with no config would change nothing, so they are an error."""
    with pytest.raises(ConfigError, match="operation 'prep' has no flags"):
        check_flags({"x": [1]}, {}, "prep")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("lr", "fast", "invalid value for flag 'lr': expected a number (currently 0.1), got 'fast'"),
        ("batch", True, "invalid value for flag 'batch': expected a number"),
        ("debug", 1, "invalid value for flag 'debug': expected true or false, got 1"),
        ("debug", "yes", "expected true or false, got 'yes'"),
    ],
)
def test_a_value_that_cannot_replace_the_current_one_is_an_error(name, value, message):
    """Numbers take numbers and booleans take true/false, so typos fail at submit."""
    with pytest.raises(ConfigError) as e:
        check_flags({name: [value]}, CONFIG, "train")
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("lr", 1),  # an int for a float
        ("batch", 0.5),  # a float for an int
        ("lr", None),  # null is always accepted
        ("optimizer", 3),  # a string config takes anything, as in Gage
        ("seed", "abc"),  # so does a null one
        ("debug", False),
    ],
)
def test_compatible_values_pass(name, value):
    """Values of a compatible type pass the check."""
    check_flags({name: [value]}, CONFIG, "train")


def test_every_value_of_a_grid_axis_is_checked():
    """One bad item in a list fails the whole submission before anything is staged."""
    with pytest.raises(ConfigError, match="got 'x'"):
        check_flags(parse_flags(["lr=[0.1,x]"]), CONFIG, "train")


def test_format_flags_reads_back_as_the_same_values():
    """Run lines show flags so that pasting them back gives the same values."""
    flags = {"lr": 0.1, "debug": True, "seed": None, "name": "a b", "tag": "1", "s": "[x]"}
    text = format_flags(flags)
    assert text == "lr=0.1 debug=true seed=null name='a b' tag='1' s='[x]'"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("1.5d", 129600),
     (".5h", 1800), ("1h 30m", 5400)],
)
def test_durations(text, seconds):
    """Time limits are seconds, or a number with s, m, h or d, and may combine units
    (`gage_queue.durations`, the grammar of every duration)."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "5x", "-5", "0", "0m", "400d"])
def test_bad_durations(text):
    """Anything else, zero and more than a year are errors that say why."""
    with pytest.raises(DurationError, match="invalid duration"):
        parse_duration(text)
