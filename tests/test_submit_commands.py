"""`list`, `show`, `logs`, `wait` and `cancel` read (and cancel writes) the runs dir;
no broker is involved.

Runs are made in-process (support/submit_runs.py) in each state a queue adds:
completed and failed runs are executed and finalized; a queued run
has `queue/submitted`; a running run's lock is held by this test process
(any process can probe it) with a heartbeat naming this host; a lost run
started and lost its lock holder.
"""

from __future__ import annotations

import re
import socket

from support.records import submitted
from support.submit_cli import (
    GageSubmit,
    assert_one_line_error,
    gage_submit_command,
    run_line_fields,
)
from support.terminal import on_terminal, terminal_env

from gage_queue.settings import Settings
from gage_runs.meta import meta_exit_code
from gage_worker.cancels import sweep_cancels


def table(text: str) -> list[dict[str, str]]:
    """Plain table rows as dicts, cut at the header's column offsets."""
    header, *rows = text.splitlines()
    columns = list(re.finditer(r"\S+", header))
    names = [m.group() for m in columns]
    starts = [m.start() for m in columns]
    ends = [*starts[1:], None]
    return [
        {name: row[start:end].strip() for name, start, end in zip(names, starts, ends, strict=True)}
        for row in rows
    ]


def test_list_shows_every_state_in_stable_columns(runs, gage_submit):
    """Newest first: lost, running on this host, queued, error, completed; `-` when empty."""
    done = runs.finished(lr=0.5)
    failed = runs.finished("fail")
    queued = runs.queued(label="my label")
    running = runs.running()
    lost = runs.lost()

    result = gage_submit("list", check=True)

    assert result.lines()[0].split() == [
        "#", "name", "op", "started", "time", "status", "host", "worker", "reason", "label"]
    rows = table(result.out)
    assert [(r["#"], r["name"], r["op"], r["status"]) for r in rows] == [
        ("1", lost.name, "train", "lost"),
        ("2", running.name, "train", "running"),
        ("3", queued.name, "train", "queued"),
        ("4", failed.name, "fail", "error"),
        ("5", done.name, "train", "completed"),
    ]
    host = socket.gethostname()
    assert [r["host"] for r in rows] == [host, host, "-", "-", "-"]
    assert [r["reason"] for r in rows] == ["keeper gone", "-", "-", "-", "-"]
    assert rows[2]["time"] == "-" and rows[4]["time"].endswith("s")  # queued; took a while
    assert [r["label"] for r in rows] == ["-", "-", "my label", "-", "-"]
    assert rows[2]["started"] == "-"
    assert rows[4]["started"][:2] == "20" and len(rows[4]["started"]) == 19
    assert "\x1b[" not in result.out  # no colour in a pipe


def test_ops_of_other_projects_show_their_namespace(runs, tmp_path):
    """Outside the project `proj`, its ops show as `proj:train`, as in Gage."""
    run = runs.finished()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".git").mkdir(parents=True)
    result = GageSubmit(elsewhere, {"GAGE_RUNS": str(runs.runs_dir)})("list", check=True)
    assert table(result.out)[0]["op"] == "proj:train"
    assert table(result.out)[0]["name"] == run.name


def test_list_filters_and_limit(runs, gage_submit):
    """--status, --op, --label, --schedule and -n narrow the list; JSON has every field."""
    runs.finished()
    runs.finished("fail")
    nightly = runs.queued(schedule="nightly", label="sweep a")
    runs.queued(label="sweep b")
    running = runs.running()

    def names(*args: str) -> list[str]:
        return [r["name"] for r in gage_submit("list", "--json", *args, check=True).json()]

    assert names("--status", "queued") == names("--label", "sweep")
    assert len(names("--status", "queued")) == 2
    assert names("--status", "running", "--status", "error") == [running.name, names("--op", "fail")[0]]
    assert names("--op", "proj:fail") == names("--op", "fail")
    assert names("--schedule", "nightly") == [nightly.name]
    assert names("--label", "sweep a") == [nightly.name]
    assert len(names()) == 5

    limited = gage_submit("list", "-n", "2", check=True)
    assert len(limited.lines()) == 3
    assert limited.err == "Showing 2 of 5 runs (use -n N or -a to show more)\n"
    assert len(gage_submit("list", "-n", "2", "-a", check=True).lines()) == 6

    (info,) = gage_submit("list", "--json", "--status", "running", check=True).json()
    assert info["host"] == socket.gethostname()
    assert info["queue"] == "gage"
    assert info["started"] is not None and info["stopped"] is None


def test_show_has_every_field(runs, gage_submit):
    """`show` gives status, exit code, times, queue and config; `status` is the same command."""
    run = runs.finished(lr=0.25, optimizer="sgd")
    submitted(run, queue="gpu", time_limit=5400)

    shown = gage_submit("show", run.name, check=True)
    fields = dict(line.split(":", 1) for line in shown.lines() if not line.startswith(" "))
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["id"] == run.id
    assert fields["name"] == run.name
    assert fields["operation"] == "train"
    assert fields["status"] == "completed"
    assert fields["exit code"] == "0"
    assert fields["queue"] == "gpu"
    assert fields["time limit"] == "1h30m"
    assert fields["run dir"] == run.run_dir
    assert {"started", "stopped"} <= set(fields)
    assert "config:\n  batch: 32\n  lr: 0.25\n  optimizer: sgd\n" in shown.out
    assert "metrics:\n  loss: 0.125\n" in shown.out
    assert gage_submit("status", run.name, check=True).out == shown.out

    data = gage_submit("show", run.id[:8], "--json", check=True).json()
    assert data["config"] == {"lr": 0.25, "batch": 32, "optimizer": "sgd"}
    assert (data["status"], data["exit_code"], data["queue"], data["time_limit"]) == (
        "completed", 0, "gpu", 5400
    )
    assert data["summary"] == {"metrics": {"loss": 0.125}}


def test_runs_are_named_as_gage_names_them(runs, gage_submit):
    """An index, a slice, an id or id prefix, a name or name prefix; ambiguity is an error."""
    a = runs.with_id("abcd1234-0000-4000-8000-000000000001")
    b = runs.with_id("abcd5678-0000-4000-8000-000000000002")
    c = runs.with_id("12345678-0000-4000-8000-000000000003")

    def shown(spec: str) -> str:
        return gage_submit("show", spec, "--json", check=True).json()["id"]

    assert shown("1") == c.id  # newest first
    assert shown("3") == a.id
    assert shown("abcd1") == a.id
    assert shown(b.id) == b.id
    assert shown(c.name) == c.id
    assert shown(c.name[:5]) == c.id  # a name prefix
    assert shown("1234") == c.id  # not an index: only 3 runs, so an id prefix
    line = assert_one_line_error(gage_submit("show", "abcd"))
    assert line == (
        f"gage-submit: error: 'abcd' matches 2 runs: {b.name} (abcd5678), {a.name} (abcd1234);"
        " use a longer prefix"
    )
    waited = gage_submit("wait", "2:3")  # a slice; these pending runs would never end
    assert_one_line_error(waited, f"run {b.name} (abcd5678) is pending and not queued")


def test_logs_prints_the_run_output(runs, gage_submit):
    """`logs` prints output/40_run as the run wrote it; `-f` on a stopped run just prints it."""
    run = runs.finished(lr=0.5, batch=4)
    expected = "lr=0.5 batch=4 optimizer=adam\nloss=0.5\n"
    assert gage_submit("logs", run.name, check=True).out == expected
    assert gage_submit("logs", "-f", run.name, check=True, timeout=10).out == expected
    queued = runs.queued()
    assert gage_submit("logs", queued.name, check=True).out == ""


def test_wait_exit_code_says_whether_any_run_failed(runs, gage_submit):
    """`wait` prints a line per run as it ends and exits 1 if any did not complete."""
    done = runs.finished()
    failed = runs.finished("fail", code=4)
    lost = runs.lost()

    ok = gage_submit("wait", done.name, check=True)
    assert run_line_fields(ok.out) == ("completed", done.name, done.id, "exit 0")

    bad = gage_submit("wait", done.name, failed.id[:8], lost.name)
    assert bad.code == 1, str(bad)
    lines = sorted(run_line_fields(line) for line in bad.lines())
    assert lines == sorted([
        ("completed", done.name, done.id, "exit 0"),
        ("error", failed.name, failed.id, "exit 4"),
        ("lost", lost.name, lost.id, "keeper gone"),
    ])
    assert bad.err == "3 runs: 1 completed, 1 error, 1 lost\n"

    queued = runs.queued()
    timed_out = gage_submit("wait", done.name, queued.name, "--timeout", "0.5")
    assert_one_line_error(timed_out, "timed out after 0.5s: 1 of 2 runs have not ended", code=4)
    assert run_line_fields(timed_out.out)[0] == "completed"


def test_cancel_a_queued_run_asks_a_worker_to_end_it(runs, gage_submit):
    """`cancel` only writes the request: with no worker on the runs dir a queued run
    stays queued, and the line says so; any worker's cancel sweep then ends it without
    running. A stopped run is left alone."""
    queued = runs.queued()
    done = runs.finished()

    result = gage_submit("cancel", queued.name, done.name, check=True)

    assert [run_line_fields(line) for line in result.lines()] == [
        ("queued", queued.name, queued.id,
         "cancel requested: a worker ends it before it starts (no worker consumes queue 'gage' now)"),
        ("completed", done.name, done.id, "already completed: nothing to cancel"),
    ]
    assert meta_exit_code(queued) is None and meta_exit_code(done) == 0
    shown = gage_submit("show", queued.name, "--json", check=True).json()
    assert shown["status"] == "queued"
    assert shown["reason"].endswith(": requested, not yet acted on")

    assert sweep_cancels(Settings(runs_dir=str(runs.runs_dir))) == 1  # as any worker does
    assert meta_exit_code(queued) == -15
    shown = gage_submit("show", queued.name, "--json", check=True).json()
    assert (shown["status"], shown["started"]) == ("terminated", None)
    assert shown["reason"].endswith("before it started")


def test_a_terminal_gets_colour_and_a_pipe_gets_plain_text(runs, project):
    """With a terminal on stdout the table is rich with colour; the words are the same."""
    runs.finished()
    code, text = on_terminal([*gage_submit_command(), "list"], project,
                             terminal_env(runs, COLUMNS="120"))
    assert code == 0
    assert "\x1b[" in text  # colour codes
    assert "completed" in text and "name" in text
    assert "worker" in text and "reason" in text  # 120 columns: every column fits


def test_a_narrow_terminal_drops_the_least_useful_columns_first():
    from gage_submit.render import TABLE_COLUMNS, fit_columns

    row = ("1", "gidik-livih", "train", "2026-12-01 21:13:25", "3m12s", "completed",
           "gpu-host-7", "w0@gpu-host-7", "completed", "baseline")
    names = lambda kept: [TABLE_COLUMNS[i] for i in kept]  # noqa: E731
    assert names(fit_columns(TABLE_COLUMNS, [row], 200)) == list(TABLE_COLUMNS)
    assert names(fit_columns(TABLE_COLUMNS, [row], 100)) == [
        "#", "name", "op", "started", "time", "status", "host", "reason", "label"]
    assert names(fit_columns(TABLE_COLUMNS, [row], 60)) == [
        "#", "name", "op", "time", "status", "reason", "label"]
    assert names(fit_columns(TABLE_COLUMNS, [row], 50)) == [
        "#", "name", "status", "reason", "label"]
    assert names(fit_columns(TABLE_COLUMNS, [row], 20)) == ["#", "name", "status", "label"]
