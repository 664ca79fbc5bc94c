"""Text from runs and users is safe to show, and every input is checked before staging.

Escape sequences, newlines, carriage returns, bidi overrides and a
10,000-character string are planted in every text field a run carries;
the real `gage-submit` (a subprocess, as users run it) prints none of
them raw, in a pipe or on a terminal, and no line is longer than a
bound. `--json` keeps the text exact. User-set names and labels with a
control character are refused at the door (exit 2, nothing staged);
flag values are the program's data: accepted, stored exactly, escaped
when shown.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import stat
import subprocess
from pathlib import Path

import pytest
from support.records import commit
from support.submit_cli import (
    GageSubmit,
    Result,
    assert_one_line_error,
    gage_submit_command,
    write_project,
)

from gage_queue.layout import queue_file
from gage_queue.states import EndReason, RunState
from gage_queue.text import SHOWN_LIMIT
from gage_runs.runs_dir import find_run, list_runs
from gage_runs.sidecars import log_user_attrs
from gage_runs.types import Run

HOSTILE = "x\x1b[31mred\x1b]0;title\x07 two\nlines \rcr \u202eevil\u2066 \x9b1m \x00nul"
LONG = HOSTILE + "L" * 10_000
# Any control character but a line's \n, and Unicode's bidi controls.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
LINE_BOUND = 12 * SHOWN_LIMIT  # a table row: ten columns of at most SHOWN_LIMIT each, padded
ESCAPED = "x\\x1b[31mred\\x1b]0;title\\x07"  # how HOSTILE's start shows


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project")


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    runs.mkdir()
    return runs


@pytest.fixture
def gage_submit(project: Path, runs_dir: Path) -> GageSubmit:
    return GageSubmit(project, {"GAGE_RUNS": str(runs_dir)})


def _writable(path: Path) -> Path:
    for part in (path.parent, path):
        if part.exists():
            part.chmod(part.stat().st_mode | stat.S_IWUSR)
    return path


def _plant(path: Path, text: str | bytes) -> None:
    _writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def _plant_everywhere(run: Run, long: bool) -> None:
    """Hostile text in every text field of `run`'s files (LONG in some where `long`)."""
    text = LONG if long else HOSTILE
    meta = Path(run.meta_dir)
    log_user_attrs(run, {"label": text})
    _plant(meta / "summary.json", json.dumps({
        "run": {"label": HOSTILE},
        "attributes": {HOSTILE: text, "note": text},
        "metrics": {HOSTILE: 1.5, "loss": {"value": 0.25}, "text": text},
    }))
    _plant(meta / "opref", f"1 proj {HOSTILE}")
    _plant(meta / "config.json", json.dumps({"lr": text, HOSTILE: 1, "batch": 32}))
    _plant(meta / "output" / "40_run", f"{HOSTILE}\r\n{LONG}\nlast\n".encode() + b"\xff\xfe\n")
    submitted = json.loads(Path(queue_file(run, "submitted")).read_text())
    _plant(Path(queue_file(run, "submitted")),
           json.dumps({**submitted, "queue": text, "schedule": HOSTILE}))


@pytest.fixture
def hostile_runs(gage_submit: GageSubmit, runs_dir: Path) -> tuple[Run, Run]:
    """Two runs submitted to the embedded broker (no worker): one made to have ended
    (completed, its host, worker and reason hostile), one queued with a hostile cancel
    request; every text field of both planted."""
    gage_submit("train", "lr=[0.1,0.2]", check=True)
    queued, ended = list_runs(str(runs_dir))  # newest first
    for run, long in ((ended, True), (queued, False)):
        _plant_everywhere(run, long)
    commit(ended, state=RunState.COMPLETED, exit_code=0, reason=EndReason.COMPLETED,
           detail=LONG, host=HOSTILE, node=HOSTILE, started=1, ended=2_000_000)
    _plant(Path(queue_file(queued, "cancel")), json.dumps({"by": LONG}))
    return find_run(str(runs_dir), ended.id), find_run(str(runs_dir), queued.id)


def assert_safe(result: Result, *, bound: int = LINE_BOUND) -> None:
    for stream in (result.out, result.err):
        bad = UNSAFE.search(stream)
        assert bad is None, f"raw {bad.group()!r} in {result}"
        longest = max((len(line) for line in stream.splitlines()), default=0)
        assert longest <= bound, f"a line of {longest} characters in {result.args}"


def test_every_command_escapes_what_a_run_carries(gage_submit, hostile_runs):
    ended, queued = hostile_runs
    for args in (
        ("list",),
        ("list", "-a", "--label", "x"),
        ("show", ended.id),
        ("show", queued.id),
        ("logs", ended.id),
        ("wait", ended.id),
        ("compare",),
        ("compare", ended.id, queued.id, "--sort", "-lr"),
        ("cancel", queued.id),
    ):
        result = gage_submit(*args)
        assert result.code == 0, str(result)
        assert_safe(result, bound=len(LONG) + 200 if args[0] == "logs" else LINE_BOUND)
        assert ESCAPED in result.out + result.err, str(result)


def test_logs_ends_lines_as_gage_does_and_raw_is_the_runs_bytes(gage_submit, hostile_runs):
    ended, _ = hostile_runs
    hostile = [ESCAPED + " two", "lines ", "cr \\u202eevil\\u2066 \\x9b1m \\x00nul"]
    assert gage_submit("logs", ended.id, check=True).out == "\n".join([
        *hostile,  # `\r\n` ends a line once
        *hostile[:2], hostile[2] + "L" * 10_000,
        "last",
        "\\xff\\xfe",  # not UTF-8
        "",
    ])
    raw = subprocess.run(
        [*gage_submit_command(), "logs", "--raw", ended.id], cwd=gage_submit.cwd,
        env=_env(gage_submit), capture_output=True, check=True,
    ).stdout
    assert raw == (Path(ended.meta_dir) / "output" / "40_run").read_bytes()


def test_json_stays_exact(gage_submit, hostile_runs):
    ended, queued = hostile_runs
    (listed_queued, listed_ended) = gage_submit("list", "--json", check=True).json()
    assert listed_ended["label"] == LONG
    assert listed_ended["host"] == HOSTILE
    assert listed_ended["reason"] == LONG
    assert listed_queued["reason"].startswith("cancelled by ")  # `shown` by the state model
    shown_run = gage_submit("show", ended.id, "--json", check=True).json()
    assert shown_run["config"]["lr"] == LONG
    assert shown_run["queue"] == LONG
    assert shown_run["schedule"] == HOSTILE
    compared = gage_submit("compare", "--json", check=True).json()
    assert {row["op"] for row in compared} <= {HOSTILE, f"proj:{HOSTILE}"}


def test_a_terminal_gets_no_raw_escape_either(gage_submit, hostile_runs):
    ended, queued = hostile_runs
    for args in (("list",), ("show", ended.id), ("wait", ended.id), ("logs", ended.id),
                 ("compare", "--csv"), ("cancel", queued.id)):
        out = _on_a_terminal(gage_submit, *args)
        for planted in ("\x1b[31mred", "\x1b]0;title", "\x07", "\u202e", "\u2066", "\x9b",
                        "\x00", "\rcr"):
            assert planted not in out, (args, planted, out)
        assert "\\x1b[31mred" in out, (args, out)


def test_a_flag_value_with_control_characters_is_data(gage_submit, runs_dir):
    # One line (Gage's grammar), and no \r: Gage writes a string into train.py as it is
    value = "x\x1b[31mred\x1b]0;title\x07 \u202eevil \x7f"
    result = gage_submit("train", f"optimizer={value}")
    assert result.code == 0, str(result)
    assert_safe(result)
    assert ESCAPED in result.out
    (run,) = list_runs(str(runs_dir))
    assert json.loads((Path(run.meta_dir) / "config.json").read_text())["optimizer"] == value
    assert_one_line_error(gage_submit("train", "optimizer=a\nb"), "a flag cannot span lines")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "--label", "\x1b[31mred"], "label \\x1b[31mred has a control character"),
        (["train", "--label", "a\nb"], "label a\\nb has a control character"),
        (["train", "--label", "\u202eevil"], "label \\u202eevil has a control character"),
        (["train", "--label", "x" * 10_000], "label is 10000 characters long: at most 200"),
        (["tr\x1b]0;t\x07ain"], "op name tr\\x1b]0;t\\x07ain has a control character"),
        (["train", '"l\x1br"=1'], "flag name l\\x1br has a control character"),
        (["train", "--queue", ""], "invalid queue name ''"),
        (["train", "--queue", "a\x1bb"], "invalid queue name 'a\\x1bb'"),
        (["train", "--time-limit", "400d"], "invalid duration '400d': more than a year"),
        (["train", "--time-limit", ""], "invalid duration ''"),
        (["train", "--runs-dir", ""], "'--runs-dir': must not be empty"),
        (["train", "-C", " "], "'--project-dir': must not be empty"),
        (["train", "--broker", ""], "'--broker': must not be empty"),
        (["train", "--wait", "--max-runs", "0"], "0 is not in the range x>=1"),
    ],
)
def test_bad_input_is_refused_before_anything_is_staged(gage_submit, runs_dir, args, fragment):
    line = assert_one_line_error(gage_submit(*args), fragment)
    assert not UNSAFE.search(line)
    assert os.listdir(runs_dir) == []


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("GAGE_NO_WORKER_NOTICE", "abc", "GAGE_NO_WORKER_NOTICE must be a positive number"),
        ("GAGE_LIST_CACHE", "maybe", "GAGE_LIST_CACHE must be on or off"),
        ("GAGE_QUEUE", "a b", "invalid queue name 'a b'"),
        ("GAGE_BROKER_URL", "nope://x", "invalid broker URL"),
    ],
)
def test_a_bad_setting_stops_a_submit_before_staging(project, runs_dir, name, value, fragment):
    gage_submit = GageSubmit(project, {"GAGE_RUNS": str(runs_dir), name: value})
    assert_one_line_error(gage_submit("train", "--wait"), fragment)
    assert os.listdir(runs_dir) == []


def test_settings_are_checked_by_the_commands_that_use_them(project, runs_dir):
    GageSubmit(project, {"GAGE_RUNS": str(runs_dir)})("train", check=True)
    (run,) = list_runs(str(runs_dir))
    for name, value, args in (
        ("GAGE_LIST_CACHE", "maybe", ("list",)),
        ("GAGE_NO_WORKER_NOTICE", "-1", ("wait", run.id)),
        ("GAGE_NO_WORKER_NOTICE", "inf", ("logs", "-f", run.id)),
    ):
        bad = GageSubmit(project, {"GAGE_RUNS": str(runs_dir), name: value})
        assert_one_line_error(bad(*args, timeout=20), f"{name} must be")


def test_a_repeated_flag_keeps_the_last_as_gage_does_and_says_so(gage_submit, runs_dir):
    result = gage_submit("train", "lr=0.1", "lr=0.2", "batch=8", check=True)
    assert result.err == (
        "gage-submit: flag lr given 2 times: the last, lr=0.2, is used, as in Gage;"
        " for a grid, write lr=[0.1,0.2]\n"
    )
    (run,) = list_runs(str(runs_dir))
    config = json.loads((Path(run.meta_dir) / "config.json").read_text())
    assert (config["lr"], config["batch"]) == (0.2, 8)


def test_a_rerun_refuses_to_copy_a_label_it_could_not_be_given(gage_submit, runs_dir):
    gage_submit("train", check=True)
    (run,) = list_runs(str(runs_dir))
    log_user_attrs(run, {"label": HOSTILE})
    assert_one_line_error(gage_submit("rerun", run.id), "label", "pass --label")
    assert_one_line_error(gage_submit("rerun", run.id, "--label", "ok", "--queue", ""),
                          "invalid queue name ''")
    assert len(list_runs(str(runs_dir))) == 1
    gage_submit("rerun", run.id, "--label", "clean", check=True)
    assert len(list_runs(str(runs_dir))) == 2


def _env(gage_submit: GageSubmit, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))}
    return {**base, "COLUMNS": "200", **gage_submit.env, **extra}


def _on_a_terminal(gage_submit: GageSubmit, *args: str, timeout: float = 30) -> str:
    """What `gage-submit ARGS` writes to a terminal (a pty for stdout and stderr)."""
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [*gage_submit_command(), *args], cwd=gage_submit.cwd,
        env=_env(gage_submit, TERM="xterm-256color", LINES="50"),
        stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary,
    )
    os.close(secondary)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([main], [], [], timeout)
            assert ready, f"gage-submit {args} wrote nothing for {timeout} s"
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(main)
        code = proc.wait(timeout)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert code == 0, (args, out)
    return out
