"""Scripting and reading (README "Scripting: JSON, versions, shell completion" and
"Around it"): `--version`, `--json` on every command that reports on runs, shell
completion, the cancel question's list, `wait`'s bar and selection, `show`'s end of
output and queue note, and an empty `list`.

Runs are made in-process in the state each test needs (support/submit_runs.py, as
in test_submit_commands.py); nothing here starts a worker or a broker but
`queue`, which sends to the embedded broker (a folder in the runs dir).
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.submit_cli import GageSubmit, gage_submit_command
from support.terminal import on_terminal, terminal_env
from support.workers import worker_command

from gage_queue.consumers import announce_queues
from gage_queue.states import RunState
from gage_runs.execute import exec_run
from gage_runs.gagefile import get_opdef, load_gagefile
from gage_runs.lifecycle import finalize_run
from gage_runs.staging import stage_op
from gage_runs.types import OpRef
from gage_submit.progress import RunLines, waiting_description

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def plain(text: str) -> str:
    """Terminal output without its escape sequences and carriage returns."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", text)


def screen_lines(text: str) -> list[str]:
    """The lines a terminal shows after `text`: the moves rich's live display makes
    (CR, LF, cursor up, erase line) done, colours dropped."""
    lines, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", text):
        if token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            lines += [""] * (row + 1 - len(lines))
        elif token.startswith("\x1b["):
            code, arg = token[-1], token[2:-1]
            if code == "A":
                row = max(0, row - int(arg or 1))
            elif code == "K":
                lines[row] = lines[row][:col] if arg in ("", "0") else ""
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token):]
            col += len(token)
    return lines


# --version ---------------------------------------------------------------------------


def test_both_commands_say_their_version_from_the_package_metadata(tmp_path):
    version = importlib.metadata.version("gage-queue")
    for prog, argv in (("gage-submit", gage_submit_command()), ("gage-worker", worker_command())):
        proc = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=30,
                              cwd=tmp_path)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"{prog} {version}\n", ""), prog


# --json --------------------------------------------------------------------------------

REPORTING = {"list", "show", "status", "submit", "rerun", "queue", "wait", "cancel", "compare",
             "priority", "pool"}
NOT_REPORTING = {"logs": "prints the run's own output", "view": "serves pages"}


def test_every_command_that_reports_on_runs_takes_json():
    import click

    from gage_submit.cli import COMMANDS, cli

    assert REPORTING | set(NOT_REPORTING) >= set(COMMANDS), set(COMMANDS) - REPORTING
    ctx = click.Context(cli)
    for name in sorted(set(COMMANDS) & REPORTING):
        command = cli.get_command(ctx, name)
        options = {opt for param in command.params for opt in param.opts}
        assert "--json" in options, name


def documented_run_keys() -> set[str]:
    """The keys of README's run object table."""
    text = README.read_text()
    table = text.split("A run object has exactly these keys", 1)[1].split("\n\n", 2)[1]
    return {key for row in table.splitlines()[2:] for key in re.findall(r"`(\w+)`", row.split("|")[1])}


def test_json_documents_are_exact_and_as_documented(runs, gage_submit):
    """Each run object has exactly the README's keys; `wait`, `cancel`, `queue` print one
    JSON document each, nothing else on stdout."""
    keys = documented_run_keys()
    assert {"id", "status", "exit_code", "duration", "rerun_of"} <= keys
    done = runs.finished()
    queued = runs.queued()

    shown = gage_submit("show", done.name, "--json", check=True).json()
    assert set(shown) == keys
    listed = gage_submit("list", "--json", check=True).json()
    assert [set(item) for item in listed] == [keys, keys]

    waited = gage_submit("wait", done.name, "--json", check=True)
    assert waited.err == ""
    [item] = waited.json()
    assert set(item) == keys and (item["id"], item["status"], item["exit_code"]) == (
        done.id, "completed", 0)

    cancelled = gage_submit("cancel", queued.name, done.name, "--json", check=True).json()
    assert [set(item) for item in cancelled] == [keys | {"cancel"}] * 2
    assert [(item["id"], item["status"], item["cancel"]["requested"]) for item in cancelled] == [
        (queued.id, "queued", True), (done.id, "completed", False)]
    assert cancelled[1]["cancel"]["detail"] == "already completed: nothing to cancel"
    assert gage_submit("cancel", "--label", "nothing-has-it", "--json", check=True).json() == []

    staged = runs.staged()
    queued_json = gage_submit("queue", staged.name, "--json", check=True).json()
    assert [(item["id"], item["status"], item["queue"]) for item in queued_json] == [
        (staged.id, "queued", "gage")]


def test_wait_json_on_a_timeout_prints_the_runs_then_the_error(runs, gage_submit):
    done = runs.finished()
    queued = runs.queued()
    result = gage_submit("wait", done.name, queued.name, "--timeout", "0.3", "--json")
    assert result.code == 4, str(result)
    assert [(item["name"], item["status"]) for item in result.json()] == [
        (done.name, "completed"), (queued.name, "queued")]
    assert result.err.startswith("gage-submit: error: timed out after 0.3s")


def test_wait_resolves_its_selection_once_by_id(runs, gage_submit, project):
    """`wait 1:2` waits for the two latest runs of the moment it starts: runs submitted
    meanwhile, which take indexes 1 and 2, are not waited for."""
    first, second = runs.queued(), runs.queued()
    proc = subprocess.Popen(
        [*gage_submit_command(), "wait", "1:2", "--json"], cwd=project,
        env={**os.environ, "GAGE_RUNS": str(runs.runs_dir), "GAGE_NO_WORKER_NOTICE": "600"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1.0)  # wait has resolved 1:2 and polls
        later = [runs.queued(), runs.queued()]  # now 1:2 of the listing
        assert gage_submit("list", "-n", "2", "--json", check=True).json()[0]["id"] in {
            run.id for run in later}
        runs.end_queued(gage_submit, first, second)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err  # cancelled runs end terminated
    assert sorted(item["id"] for item in json.loads(out)) == sorted([first.id, second.id])


# the bar of `wait` ---------------------------------------------------------------------


def test_the_bar_names_the_running_runs_then_counts_the_rest(runs):
    running = [runs.running() for _ in range(4)]
    queued = runs.queued()
    states = {run.id: RunState.RUNNING for run in running} | {queued.id: RunState.QUEUED}
    by_id = {run.id: run for run in [*running, queued]}
    text = waiting_description(states, by_id)
    names = ", ".join(f"{run.name} (train)" for run in running[:3])
    assert text == f"4 running: {names} +1; 1 queued"
    assert waiting_description({queued.id: RunState.QUEUED}, by_id) == "1 queued"


class _Screen(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_notice_goes_above_the_bar_through_its_console(monkeypatch):
    """With the bar live and stderr the terminal too, a notice is printed by the bar's
    console (above the bar, which is drawn again below it), never written to stderr."""
    screen, stderr = _Screen(), _Screen()
    monkeypatch.setattr(sys, "stderr", stderr)
    with RunLines(screen, 2, "Waiting") as lines:
        lines.update(0, "1 running: a-b (train)")
        lines.notice("run x has waited 5 s on queue 'gpu', which no worker consumes")
        lines.update(1, "1 running: a-b (train)")
    assert stderr.getvalue() == ""
    text = plain(screen.getvalue())
    assert "gage-submit: run x has waited 5 s on queue 'gpu', which no worker consumes" in text
    assert text.index("which no worker consumes") < text.rindex("1 running: a-b (train)")

    piped = io.StringIO()  # no terminal: no bar, the notice on stderr
    with RunLines(piped, 2, "Waiting") as lines:
        lines.notice("no worker")
    assert stderr.getvalue() == "gage-submit: no worker\n" and piped.getvalue() == ""


@pytest.mark.system
def test_wait_on_a_terminal_names_what_runs_and_keeps_the_notice_out_of_the_bar(
        runs, gage_submit, project):
    running = runs.running()
    queued = runs.queued(queue="gpu")
    ended = []

    def end_them(text: str) -> bool:
        if "which no worker consumes" not in plain(text) or "1 running:" not in plain(text):
            return False
        runs.locks.pop().release()  # the running run's keeper dies: it is lost, so done
        runs.end_queued(gage_submit, queued)
        ended.append(True)
        return True

    code, out = on_terminal(
        [*gage_submit_command(), "wait", running.name, queued.name], project,
        terminal_env(runs, GAGE_NO_WORKER_NOTICE="0.3"), while_running=end_them,
    )
    text = plain(out)
    assert ended and code == 1, text
    assert f"1 running: {running.name} (train); 1 queued" in text
    # The bar was live when the notice came: after the notice, the bar is drawn below
    # it, and the notice keeps a line of its own on the screen to the end.
    notice_at = out.index("which no worker consumes")
    assert f"1 running: {running.name}" in plain(out[notice_at:])
    shown = screen_lines(out)
    notices = [line for line in shown if "no worker consumes" in line]
    assert len(notices) == 1, shown
    assert notices[0].startswith(f"gage-submit: run {queued.name}"), shown
    assert notices[0].endswith("still waiting"), shown
    assert not any("━" in line for line in shown), shown  # the bar went away at the end


# the cancel question -------------------------------------------------------------------


def test_cancel_on_a_terminal_lists_what_it_cancels_before_asking(runs, project):
    selected = [runs.queued(label="sweep") for _ in range(22)]
    code, out = on_terminal(
        [*gage_submit_command(), "cancel", "--label", "sweep"], project, terminal_env(runs),
        answer=b"n\n", prompt=b"Cancel 22 runs",
    )
    text = plain(out)
    assert code == 0, text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["name", "op", "status"])
    listed = lines[header + 1 : header + 21]
    assert [line.split() for line in listed] == [[run.name, "train", "queued"]
                                                 for run in reversed(selected)][:20]
    assert lines[header + 21].strip() == "and 2 more"
    assert "Cancel 22 runs (label 'sweep', pending or queued or waiting or running)? [y/N]" in text
    assert "nothing cancelled" in text


# show ----------------------------------------------------------------------------------


def test_show_gives_an_ended_runs_duration_and_last_output_lines_escaped(runs, gage_submit,
                                                                        project):
    (project / "many.py").write_text(
        "for i in range(15):\n    print(f'line {i}')\nprint('\\x1b[31mred\\x1b[0m and \\u202eevil')\n")
    gage = (project / "gage.toml").read_text()
    (project / "gage.toml").write_text(gage + '\n[many]\nexec = "python many.py"\n')
    runs.gagefile = load_gagefile(str(project / "gage.toml"))
    run = stage_op(str(project), get_opdef(runs.gagefile, "many"), OpRef("proj", "many"), {},
                   str(runs.runs_dir))
    exec_run(run)
    finalize_run(run, 0)

    out = gage_submit("show", run.name, check=True).out
    fields = dict(line.split(":", 1) for line in out.splitlines() if not line.startswith(" "))
    assert re.fullmatch(r"\d+(\.\d)?s", fields["duration"].strip()), fields
    tail = out.split("output (last 10 lines):\n", 1)[1].splitlines()
    assert tail == [f"  line {i}" for i in range(6, 15)] + ["  \\x1b[31mred\\x1b[0m and \\u202eevil"]
    assert "\x1b" not in out and "\u202e" not in out


def test_show_says_whether_a_worker_consumes_a_queued_runs_queue(runs, gage_submit):
    run = runs.queued(queue="gpu")
    out = gage_submit("show", run.name, check=True).out
    assert "waiting:   no worker consumes queue 'gpu' (start one: gage-worker -Q gpu)\n" in out
    assert "output (last" not in out
    fds = announce_queues(str(runs.runs_dir), ["gpu"])  # as a worker on queue gpu does
    try:
        out = gage_submit("show", run.name, check=True).out
        assert "waiting:   for a free slot of a worker of queue 'gpu'\n" in out
    finally:
        for fd in fds:
            os.close(fd)


# an empty list -------------------------------------------------------------------------


def test_an_empty_list_says_so_on_stderr_and_exits_0(runs, gage_submit, tmp_path):
    empty = gage_submit("list", check=True)
    assert (empty.out, empty.err) == ("", f"no runs in {runs.runs_dir}\n")
    missing = GageSubmit(tmp_path, {"GAGE_RUNS": str(tmp_path / "nowhere")})("list", check=True)
    assert missing.err == f"no runs in {tmp_path / 'nowhere'}\n"
    runs.finished()
    unmatched = gage_submit("list", "--op", "fail", "--status", "queued", check=True)
    assert (unmatched.out, unmatched.err) == (
        "", f"no runs match op fail, queued in {runs.runs_dir}\n")
    assert gage_submit("list", "--op", "fail", "--json", check=True).json() == []
    assert gage_submit("list", "--op", "fail", "--json", check=True).err == ""


# shell completion ----------------------------------------------------------------------


def complete(cwd: Path, env: dict[str, str], line: str, shell: str = "bash") -> list[str]:
    """What `gage-submit` offers for the last word of `line` (click's completion protocol:
    the words so far in COMP_WORDS, the index of the one completed in COMP_CWORD)."""
    words = line.split(" ")
    proc = subprocess.run(
        gage_submit_command(), cwd=cwd, capture_output=True, text=True, timeout=30,
        env={**os.environ, **env, "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1),
             "_GAGE_SUBMIT_COMPLETE": f"{shell}_complete"},
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    if shell == "bash":
        return [item.split(",", 1)[1] for item in proc.stdout.splitlines() if item]
    return proc.stdout.splitlines()


def test_completion_offers_commands_and_the_projects_ops(project, runs, tmp_path):
    env = {"GAGE_RUNS": str(runs.runs_dir)}
    first = complete(project, env, "gage-submit ")
    assert {"list", "show", "wait", "cancel", "submit"} <= set(first)
    assert {"train", "slow", "fail"} <= set(first)  # the ops: the first word may be one
    assert complete(project, env, "gage-submit s") == ["show", "status", "submit", "slow"]
    assert complete(project, env, "gage-submit submit ") == ["fail", "slow", "train"]
    assert complete(project, env, "gage-submit train lr=0.1 ") == []  # flags: nothing offered
    assert complete(project, env, "gage-submit list --op t") == ["train"]
    assert complete(project, env, "gage-submit list --status que") == ["queued"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert complete(elsewhere, env, f"gage-submit -C {project} tr") == ["train"]
    assert "train" not in complete(elsewhere, env, "gage-submit ")  # no project: no ops
    assert complete(project, env, "gage-submit list -C ") == [""]  # a dir: the shell's own
    zsh = complete(project, env, "gage-submit tr", shell="zsh")
    assert zsh == ["plain", "train", "Fit a tiny model"]


def test_completion_offers_run_names_and_ids_newest_first(project, runs):
    env = {"GAGE_RUNS": str(runs.runs_dir)}
    old = runs.finished()
    new = runs.queued()
    for command in ("show", "logs", "wait", "cancel", "rerun", "queue", "compare", "status"):
        assert complete(project, env, f"gage-submit {command} ") == [new.name, old.name], command
    assert complete(project, env, f"gage-submit show {old.name[:3]}") == [
        run.name for run in (new, old) if run.name.startswith(old.name[:3])] + [
        run.id for run in (new, old) if run.id.startswith(old.name[:3])]
    assert complete(project, env, f"gage-submit show {old.id[:6]}") == [old.id]
    assert complete(project, env, f"gage-submit wait {new.name} ") == [old.name]  # once each
    zsh = complete(project, env, f"gage-submit show {old.id[:6]}", shell="zsh")
    assert zsh == ["plain", old.id, "train, completed"]
    assert complete(project, {"GAGE_RUNS": str(project / "missing")}, "gage-submit show ") == []


def test_the_readme_completion_line_installs_a_bash_completion(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    line = next(line for line in README.read_text().splitlines()
                if line.startswith('eval "$(_GAGE_SUBMIT_COMPLETE=bash_source gage-submit)"'))
    script = line.split("  #")[0]
    env = {**os.environ, "PATH": os.pathsep.join(
        [str(Path(gage_submit_command()[0]).parent), os.environ.get("PATH", "")])}
    proc = subprocess.run([bash, "-c", f"{script}\ncomplete -p gage-submit"], env=env,
                          capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "-F _gage_submit_completion gage-submit" in proc.stdout


def test_help_lists_each_commands_own_short_help_without_loading_it():
    import subprocess
    import sys

    import click

    from gage_submit.cli import COMMANDS, cli

    ctx = click.Context(cli)
    for name, (_, short) in COMMANDS.items():
        assert cli.get_command(ctx, name).get_short_help_str(limit=300) == short, name
    code = ("import sys; from gage_submit.cli import run; run(['--help']);"
            " print(sorted(m for m in sys.modules if m.startswith('gage_submit.commands.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.rstrip().endswith("[]"), out
    assert "  wait      Wait for runs to end." in out
