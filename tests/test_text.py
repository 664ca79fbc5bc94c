"""Run text made safe to show, and user text checked at the door."""

from __future__ import annotations

import pytest

from gage_queue.text import BadText, check_user_text, has_control, shown


@pytest.mark.parametrize(("raw", "safe"), [
    ("plain label", "plain label"),
    ("\x1b[31mRED\x1b[0m", "\\x1b[31mRED\\x1b[0m"),
    ("a\nb\rc", "a\\nb\\rc"),
    ("tab\there", "tab here"),
    ("\x7f\x9b2J", "\\x7f\\x9b2J"),  # DEL and the 8-bit CSI
    ("abc\u202edcba", "abc\\u202edcba"),  # a right-to-left override
    ("naïve ✓ 日本", "naïve ✓ 日本"),
])
def test_shown_escapes_every_control_character(raw, safe):
    assert shown(raw) == safe
    assert not has_control(shown(raw))


def test_shown_cuts_long_text():
    assert shown("x" * 10_000) == "x" * 399 + "…"
    assert shown("x" * 10, limit=5) == "xxxx…"
    assert shown("x" * 10_000, limit=None) == "x" * 10_000


def test_user_text_is_checked_at_the_door():
    assert check_user_text("fine-label 1", "label") == "fine-label 1"
    with pytest.raises(BadText, match=r"label .*\\x1b.* has a control character"):
        check_user_text("\x1b[2J", "label")
    with pytest.raises(BadText, match="label is 201 characters long: at most 200"):
        check_user_text("x" * 201, "label")
    with pytest.raises(BadText):
        check_user_text("a\nb", "label")


@pytest.mark.parametrize(("name", "value", "message"), [
    ("GAGE_NO_WORKER_NOTICE", "abc", "GAGE_NO_WORKER_NOTICE must be a positive number"),
    ("GAGE_LIST_CACHE", "maybe", "GAGE_LIST_CACHE must be on or off, not 'maybe'"),
    ("GAGE_CANCEL_GRACE", "-1", "GAGE_CANCEL_GRACE must be a positive number"),
])
def test_every_setting_is_checked_when_settings_load(name, value, message):
    from gage_queue.errors import SettingsError
    from gage_queue.settings import Settings

    with pytest.raises(SettingsError, match=message):
        Settings.from_env({name: value})


def test_switches_read_the_usual_words():
    from gage_queue.settings import Settings

    assert [Settings.from_env({"GAGE_LIST_CACHE": word}).list_cache
            for word in ("off", "0", "No", "on", "TRUE", "")] == [False] * 3 + [True] * 3
