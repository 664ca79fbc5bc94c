"""A plain submit's command line read without click (`gage_submit.submit_args`): the same
parameters as click's declaration for every form it reads, None for every other, and a
submit that loads no click."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from gage_submit import submit_args
from gage_submit.commands import COMMANDS
from gage_submit.commands.options import not_empty
from gage_submit.commands.submit import command

REPO = Path(__file__).resolve().parent.parent


def click_params(argv: list[str]) -> dict | None:
    """What the click group passes the submit command for `argv`, or None if click refuses it
    or runs something else."""
    words = argv[1:] if argv[:1] == ["submit"] else argv
    if words[:1] and (words[0] in COMMANDS or words[0].startswith("-")):
        return None
    try:
        with command.make_context("submit", list(words)) as ctx:
            return ctx.params
    except click.exceptions.Exit:
        return None
    except click.ClickException:
        return None


def test_the_table_is_the_click_declaration():
    """Every option of the submit command, its kind, bounds, choices, default and check."""
    table: dict[str, tuple] = {}
    for param in command.params:
        if isinstance(param, click.Argument):
            assert (param.name, param.nargs) == ("args", -1)
            continue
        if param.is_flag:
            kind = "flag"
        elif param.multiple:
            kind = "repeatable"
        else:
            kind = "value"
        bounds = (param.type.min, param.type.max) if isinstance(param.type, click.IntRange) \
            else None
        choices = tuple(param.type.choices) if isinstance(param.type, click.Choice) else None
        for opt in param.opts + param.secondary_opts:
            table[opt] = (param.name, kind, bounds, choices, param.callback is not_empty)
    ours: dict[str, tuple] = {}
    for kind, options in (("flag", submit_args.FLAGS), ("repeatable", submit_args.REPEATABLE),
                          ("value", submit_args.VALUE_OPTIONS)):
        for opt, name in options.items():
            ours[opt] = (name, kind, submit_args.int_range(name),
                         submit_args.choices(name), name in submit_args.NOT_EMPTY)
    assert ours == table
    assert {**click_params(["train"]), "args": ()} == submit_args.DEFAULTS


READ = [
    ["train"],
    ["submit", "train", "lr=0.1"],
    ["train", "lr=[0.1,0.01]", "epochs=3", "x=-1"],
    ["lr=0.1"],
    ["train", "-", "name=a b"],
    ["train", "--label", "first try", "-q", "gpu", "--gpus", "2", "--priority", "-5"],
    ["train", "--label=x=y", "--queue=q", "--gpus=0", "--priority=+7", "--retries", "100"],
    ["train", "--after", "abc", "--after=label:grid", "--after-any", "--wait"],
    ["train", "--follow", "--signal", "USR1@60", "--preemptible", "--retry-on", "error"],
    ["train", "--max-runs", "1_000", "--time-limit", "2h", "-y", "--json"],
    ["train", "-C", "proj", "--runs-dir", "/r", "--broker", "redis://h:1/0", "x=1"],
    ["train", "--label", "-x"],
    ["train", "--priority", " 3 "],
    ["train", "--queue", ""],
    ["train", "--label", ""],
]

LEFT_TO_CLICK = [
    [], ["submit"], ["-h"], ["--help"], ["--version"], ["list"], ["submit", "list"],
    ["show", "1"], ["train", "-h"], ["train", "--help"], ["train", "--", "x=1"],
    ["train", "-qgpu"], ["train", "-q=gpu"], ["train", "--nope"], ["train", "-1"],
    ["train", "--gpus", "65"], ["train", "--gpus", "two"], ["train", "--gpus", "-1"],
    ["train", "--priority", "1001"], ["train", "--max-runs", "0"], ["train", "--retries", "101"],
    ["train", "--retry-on", "never"], ["train", "--runs-dir", ""], ["train", "-C", " "],
    ["train", "--broker", ""], ["train", "--label"], ["train", "--after"],
    ["train", "--wait=yes"], ["train", "--label", "a", "--label", "b"],
    ["train", "--wait", "--wait"], ["--label", "x", "train"],
]


@pytest.mark.parametrize("argv", READ, ids=" ".join)
def test_a_plain_submit_is_read_as_click_reads_it(argv):
    params = submit_args.parse(argv)
    assert params is not None
    assert params == click_params(argv)


@pytest.mark.parametrize("argv", LEFT_TO_CLICK, ids=lambda a: " ".join(a) or "(none)")
def test_everything_else_is_left_to_click(argv):
    assert submit_args.parse(argv) is None


def test_shell_completion_is_left_to_click(monkeypatch):
    monkeypatch.setenv("_GAGE_SUBMIT_COMPLETE", "bash_complete")
    assert submit_args.parse(["train"]) is None


def test_what_click_refuses_is_never_read():
    """No argument list of the corpus is read here where click refuses it."""
    for argv in READ + LEFT_TO_CLICK:
        if click_params(argv) is None:
            assert submit_args.parse(argv) is None, argv


def test_a_plain_submit_loads_no_click(tmp_path):
    """A one-run submit, run as users run it, stages and queues its run with no click module
    loaded; `--help` and a bad value still go through click."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "gage.toml").write_text('[say]\nexec = "true"\n')
    (tmp_path / "runs").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))}
    env.update(PYTHONPATH=str(REPO), GAGE_RUNS=str(tmp_path / "runs"),
               GAGE_NO_WORKER_NOTICE="3600")
    code = ("import sys; from gage_submit.cli import run; code = run(sys.argv[1:]);"
            " print('click' in sys.modules, code)")
    out = subprocess.run([sys.executable, "-c", code, "say", "--label", "a"], cwd=project,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split()[-2:] == ["False", "0"], out.stderr
    assert out.stdout.startswith("queued ")
    assert len(os.listdir(tmp_path / "runs" / ".gage-queue" / "waiting")) == 1
    out = subprocess.run([sys.executable, "-c", code, "say", "--gpus", "x"], cwd=project,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "2"]
    assert "Invalid value for '--gpus'" in out.stderr
