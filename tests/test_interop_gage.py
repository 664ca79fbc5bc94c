"""Interop with the real Gage CLI (`gage==0.1.2`, design §2.5, run-format §8, §10, §12).

Runs written by `gage_runs` must list, show and select in real `gage`
exactly as Gage's own runs do, and runs that real `gage` stages must be
readable (and runnable) with `gage_runs`. The project is a small `say.py`
with two ops: `say`, and `prep`, whose stage-runtime hook fails.

Real gage's tables are read with `TERM=unknown` (plain markdown tables).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.real_gage import RealGage

from gage_runs import (
    OpDef,
    OpRef,
    Run,
    RunExecError,
    RunManifest,
    exec_run,
    finalize_run,
    find_run,
    list_runs,
    meta_config,
    meta_opdef,
    run_status,
    run_user_attrs,
    stage_op,
)
from gage_runs.config import read_project_config
from gage_runs.files_log import file_sha256
from gage_runs.gagefile import get_opdef, load_gagefile, project_namespace, resolve_runs_dir

pytestmark = pytest.mark.system  # the real Gage CLI in its own venv

SAY_PY = """\
import json
import sys

msg = "Hello"
count = 2
code = 0

for _ in range(count):
    print(msg)
with open("said.txt", "w") as f:
    f.write(msg * count)
with open("summary.json", "w") as f:
    json.dump({"metrics": {"count": count}, "attributes": {"said": msg}}, f)
sys.exit(code)
"""

GAGE_TOML = """\
[say]
description = "Say something"
exec = "python say.py"
config = "say.py"

[prep]
description = "Prepare, then say something"
exec = { run = "python say.py", stage-runtime = "echo preparing; exit 2" }
config = "say.py"
"""

PROJECT_CONFIG = {"msg": "Hello", "count": 2, "code": 0}


# ---------------------------------------------------------------------
# Reading real gage's plain tables


def table_rows(text: str) -> list[list[str]]:
    """The rows of a markdown table, as stripped cells (separator rows dropped)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|") or re.fullmatch(r"[|\- ]+", line):
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@dataclass
class Listed:
    """One row of `gage runs`."""

    index: str
    name: str
    operation: str
    started: str
    status: str
    label: str


def parse_runs(text: str) -> list[Listed]:
    """The rows of `gage runs`, checking its header."""
    rows = table_rows(text)
    assert rows and rows[0] == ["#", "name", "operation", "started", "status", "label"], text
    return [Listed(*row) for row in rows[1:]]


def parse_show(text: str) -> dict[str, list[list[str]]]:
    """`gage show` as sections: `header` (id, op/status, label), `Attributes`, ...

    A row of a two-column section without `|` between its cells is split
    on runs of two or more spaces.
    """
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("|"):
            title = "header" if not sections else stripped
            current = sections.setdefault(title, [])
            if title == "header":
                current.append([stripped])
            continue
        if re.fullmatch(r"[|\- ]+", stripped) or current is None:
            continue
        inner = stripped[1:-1].strip()
        cells = inner.split("|") if "|" in inner else re.split(r"\s{2,}", inner)
        current.append([cell.strip() for cell in cells])
    return sections


def show_pairs(sections: dict[str, list[list[str]]], title: str) -> dict[str, str]:
    """A key/value section (`Attributes`, `Configuration`) as a dict."""
    return {row[0]: (row[1] if len(row) > 1 else "") for row in sections.get(title, [])}


# ---------------------------------------------------------------------
# The project and runs made with gage_runs


@dataclass
class Project:
    """The `say` project: its dir, namespace and op definitions."""

    dir: Path

    @property
    def ns(self) -> str:
        return project_namespace(str(self.dir))

    def opdef(self, name: str) -> OpDef:
        return get_opdef(load_gagefile(str(self.dir / "gage.toml")), name)

    def config(self, name: str, **flags: Any) -> dict[str, Any]:
        """The project's config values overlaid with flags, as `gage run` does."""
        return {**read_project_config(str(self.dir), self.opdef(name)), **flags}

    def stage(self, op: str, runs_dir: Path, label: str | None = None, **flags: Any) -> Run:
        return stage_op(
            str(self.dir), self.opdef(op), OpRef(self.ns, op), self.config(op, **flags),
            str(runs_dir), label=label,
        )


def exec_and_finalize(run: Run, watcher: Any = None) -> int:
    """Exec then finalize, passing the exit code on as `gage run` does."""
    try:
        exec_run(run, watcher=watcher)
        exit_code = 0
    except RunExecError as e:
        exit_code = e.exit_code
    finalize_run(run, exit_code)
    return exit_code


class Watcher:
    """A phase watcher that calls `on_start(proc)` once the run has started."""

    def __init__(self, on_start: Callable[[subprocess.Popen], None]):
        self.on_start = on_start

    def started(self, proc: subprocess.Popen) -> None:
        self.on_start(proc)

    def tick(self, proc: subprocess.Popen) -> None:
        pass

    def finished(self, proc: subprocess.Popen, exit_code: int) -> None:
        pass


@dataclass
class OurRuns:
    """Runs made with gage_runs, one per status, plus what gage saw mid-run."""

    project: Project
    runs_dir: Path
    runs: dict[str, Run] = field(default_factory=dict)
    while_running: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project dir named `proj` with say.py and gage.toml."""
    project_dir = tmp_path_factory.mktemp("interop") / "proj"
    project_dir.mkdir()
    (project_dir / "say.py").write_text(SAY_PY)
    (project_dir / "gage.toml").write_text(GAGE_TOML)
    return Project(project_dir)


@pytest.fixture(scope="module")
def ours(project: Project, real_gage: RealGage) -> OurRuns:
    """Six runs made with gage_runs, labelled after what happens to them.

    completed (`done`), error: sys.exit(3) (`failed`), terminated: SIGTERM
    to its process group (`killed`), staged (`waiting`), pending: its
    stage-runtime hook fails (`broken`), and `live`, which real gage looks
    at while its process runs (proc/lock present), then completes.
    """
    runs_dir = project.dir.parent / "runs"
    result = OurRuns(project, runs_dir)
    runs = result.runs

    runs["completed"] = project.stage("say", runs_dir, "done", msg="Hi there", count=3)
    assert exec_and_finalize(runs["completed"]) == 0

    runs["error"] = project.stage("say", runs_dir, "failed", code=3)
    assert exec_and_finalize(runs["error"]) == 3

    runs["terminated"] = project.stage("say", runs_dir, "killed")
    assert exec_and_finalize(
        runs["terminated"], Watcher(lambda proc: os.killpg(proc.pid, signal.SIGTERM))
    ) == -signal.SIGTERM

    runs["staged"] = project.stage("say", runs_dir, "waiting")

    with pytest.raises(RunExecError) as failed:
        project.stage("prep", runs_dir, "broken")
    assert (failed.value.phase_name, failed.value.exit_code) == ("stage-runtime", 2)
    [runs["pending"]] = [run for run in list_runs(str(runs_dir)) if run.opref.op_name == "prep"]

    live = project.stage("say", runs_dir, "live", msg="Still here")

    def look(proc: subprocess.Popen) -> None:
        assert os.path.exists(os.path.join(live.meta_dir, "proc", "lock"))
        seen = result.while_running
        seen["runs"] = real_gage("runs", runs_dir=runs_dir, project=project.dir).stdout
        seen["show"] = real_gage("show", live.name, runs_dir=runs_dir).stdout
        seen["select"] = real_gage("select", "--label", live.id[:8], runs_dir=runs_dir).stdout

    assert exec_and_finalize(live, Watcher(look)) == 0
    runs["live"] = live
    return result


def show(real_gage: RealGage, ours: OurRuns, key: str) -> dict[str, list[list[str]]]:
    """`gage show <name>` of one of our runs, parsed."""
    out = real_gage("show", ours.runs[key].name, runs_dir=ours.runs_dir).stdout
    return parse_show(out)


# ---------------------------------------------------------------------
# Runs written by gage_runs, read by real gage


EXPECTED_ROWS = {
    # key: (op, status in `gage runs`, label)
    "completed": ("say", "completed", "done"),
    "error": ("say", "error", "failed"),
    "terminated": ("say", "terminated", "killed"),
    "staged": ("say", "staged", "waiting"),
    "pending": ("prep", "pending", "broken"),
    "live": ("say", "completed", "live"),
}


def test_gage_runs_lists_each_run_with_its_status_op_and_label(real_gage, ours):
    """`gage runs` in the project lists every run: status, op name and label."""
    out = real_gage("runs", runs_dir=ours.runs_dir, project=ours.project.dir).stdout
    listed = parse_runs(out)
    # The name column shows the proquint's first word.
    by_name = {row.name: row for row in listed}
    assert len(by_name) == len(listed) == len(ours.runs), out
    for key, (op, status, label) in EXPECTED_ROWS.items():
        row = by_name[ours.runs[key].name.split("-")[0]]
        assert (row.operation, row.status, row.label) == (op, status, label), key
        # Only runs that started have a `started` time.
        assert bool(row.started) == (key not in ("staged", "pending")), key


def test_gage_runs_orders_like_gage_runs_list_runs(real_gage, ours):
    """Real gage and `list_runs` agree on the order: newest (started/staged) first."""
    out = real_gage("runs", runs_dir=ours.runs_dir).stdout
    names = [row.name for row in parse_runs(out)]
    assert names == [run.name.split("-")[0] for run in list_runs(str(ours.runs_dir))]


def test_gage_runs_outside_the_project_shows_namespaced_ops(real_gage, ours):
    """Outside the project, the op column is `<project dir name>:<op>` (the opref ns)."""
    out = real_gage("runs", runs_dir=ours.runs_dir, cwd=ours.runs_dir).stdout
    ops = {row.operation for row in parse_runs(out)}
    assert ops == {"proj:say", "proj:prep"}


def test_gage_shows_a_run_as_running_while_its_process_runs(ours):
    """While the run's process is alive (proc/lock present) gage says `running`."""
    live = ours.runs["live"]
    listed = {row.name: row for row in parse_runs(ours.while_running["runs"])}
    row = listed[live.name.split("-")[0]]
    assert (row.operation, row.status, row.label) == ("say", "running", "live")
    assert row.started
    sections = parse_show(ours.while_running["show"])
    assert sections["header"][:2] == [[live.id], ["proj:say", "running"]]
    attrs = show_pairs(sections, "Attributes")
    assert attrs["exit_code"] == "" and attrs["stopped"] == "" and attrs["started"]
    assert ours.while_running["select"].strip() == "live"


def test_gage_show_completed_run(real_gage, ours):
    """`gage show` of a completed run: header, attributes, config, summary, files, output."""
    run = ours.runs["completed"]
    sections = show(real_gage, ours, "completed")
    assert sections["header"] == [[run.id], ["proj:say", "completed"], ["done"]]
    attrs = show_pairs(sections, "Attributes")
    assert attrs["id"] == run.id
    assert attrs["name"] == run.name
    assert attrs["exit_code"] == "0"
    assert attrs["started"] and attrs["stopped"]
    assert attrs["location"] == str(ours.runs_dir)
    assert attrs["project"] == str(ours.project.dir)
    assert show_pairs(sections, "Configuration") == {"code": "0", "count": "3", "msg": "Hi there"}
    assert sections["Summary"][1:] == [
        ["said", "Hi there", "attribute"],
        ["count", "3", "metric"],
    ]
    files = {row[0]: row[1] for row in sections["Files"][1:-1]}
    assert files == {
        "said.txt": "generated",
        "summary.json": "generated",
        "gage.toml": "source code",
        "say.py": "source code",
    }
    assert sections["Files"][-1][0] == "4 files"
    assert sections["Output"] == [["Hi there"]] * 3


def test_gage_show_error_run(real_gage, ours):
    """A run that called sys.exit(3) shows `error`, exit code 3 and its output."""
    sections = show(real_gage, ours, "error")
    assert sections["header"][1:] == [["proj:say", "error"], ["failed"]]
    assert show_pairs(sections, "Attributes")["exit_code"] == "3"
    assert show_pairs(sections, "Configuration")["code"] == "3"
    assert sections["Output"] == [["Hello"]] * 2


def test_gage_show_terminated_run(real_gage, ours):
    """A run whose process group got SIGTERM shows `terminated`, exit code -15."""
    sections = show(real_gage, ours, "terminated")
    assert sections["header"][1:] == [["proj:say", "terminated"], ["killed"]]
    attrs = show_pairs(sections, "Attributes")
    assert attrs["exit_code"] == "-15"
    assert attrs["started"] and attrs["stopped"]


def test_gage_show_staged_run(real_gage, ours):
    """A staged run shows `staged`, its source files, and no start, exit or output."""
    sections = show(real_gage, ours, "staged")
    assert sections["header"][1:] == [["proj:say", "staged"], ["waiting"]]
    attrs = show_pairs(sections, "Attributes")
    assert (attrs["started"], attrs["stopped"], attrs["exit_code"]) == ("", "", "")
    assert show_pairs(sections, "Configuration") == {"code": "0", "count": "2", "msg": "Hello"}
    assert {row[0]: row[1] for row in sections["Files"][1:-1]} == {
        "gage.toml": "source code",
        "say.py": "source code",
    }
    assert "Output" not in sections


def test_gage_show_pending_run(real_gage, ours):
    """A run whose staging hook failed shows `pending` and the hook's output."""
    sections = show(real_gage, ours, "pending")
    assert sections["header"][1:] == [["proj:prep", "pending"], ["broken"]]
    assert show_pairs(sections, "Attributes")["exit_code"] == ""
    assert sections["Output"] == [["preparing"]]


def test_gage_select_finds_runs_by_id_prefix_and_name(real_gage, ours):
    """`gage select` resolves id prefixes and names to our runs and their attributes."""
    completed, staged = ours.runs["completed"], ours.runs["staged"]
    runs_dir = ours.runs_dir

    def select(*args: str) -> list[str]:
        return real_gage("select", *args, runs_dir=runs_dir).stdout.splitlines()

    assert select(completed.id[:8], staged.name) == [completed.id, staged.id]
    assert select("--name", completed.id[:6]) == [completed.name]
    assert select("--label", completed.name, staged.id[:8]) == ["done", "waiting"]
    assert select("--run-dir", completed.name) == [completed.run_dir]
    assert select("--meta-dir", completed.name) == [completed.meta_dir]
    assert select("--project-dir", staged.name) == [str(ours.project.dir)]


def test_gage_finds_runs_in_the_project_runs_dir(real_gage, project, tmp_path):
    """A run staged into `<project>/.gage/runs` (no GAGE_RUNS) is the project's run."""
    gagefile = load_gagefile(str(project.dir / "gage.toml"))
    runs_dir = Path(resolve_runs_dir(str(project.dir), gagefile, env={}))
    assert runs_dir == project.dir / ".gage" / "runs"
    run = project.stage("say", runs_dir, "local")
    try:
        assert Path(run.run_dir + ".project").read_text() == "file:../.."
        env = {**real_gage.env(runs_dir), "GAGE_RUNS": ""}
        proc = subprocess.run(
            [str(real_gage.gage), "-C", str(project.dir), "select", "--project-dir"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
        )
        assert proc.stdout.splitlines() == [str(project.dir)]
    finally:
        _remove_tree(project.dir / ".gage")


def _remove_tree(path: Path) -> None:
    """Remove a tree of read-only run files."""
    for root, dirs, _files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    os.chmod(path, 0o755)
    shutil.rmtree(path)


# ---------------------------------------------------------------------
# Same op, same flags: gage_runs writes what real gage writes

TIMESTAMP_FILES = {"initialized", "staged", "started", "stopped"}


def run_fingerprint(run: Run) -> dict[str, tuple[str, bool]]:
    """Every file of a run (meta, run dir, sidecars): normalized content, read-only.

    Run ids, timestamps, mtimes and log times are replaced by placeholders;
    an output index becomes its record count and stream bytes.
    """
    files: dict[str, tuple[str, bool]] = {}
    roots = {"meta": run.meta_dir, "run": run.run_dir, "user": run.run_dir + ".user"}
    for label, root in roots.items():
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                if label == "user":
                    rel = f"entry-{sorted(os.listdir(root)).index(name)}"
                files[f"{label}/{rel}"] = (_normalized(label, rel, path, run), _readonly(path))
    project = run.run_dir + ".project"
    files["<id>.project"] = (Path(project).read_text(), _readonly(project))
    return files


def _readonly(path: str) -> bool:
    return not os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def _normalized(label: str, rel: str, path: str, run: Run) -> str:
    data = Path(path).read_bytes()
    if rel.endswith(".index"):
        records = [data[i : i + 9] for i in range(0, len(data), 9)]
        return f"{len(records)} records, streams {sorted({r[8] for r in records})}"
    text = data.decode().replace(run.id, "<id>")
    if label == "meta" and rel in TIMESTAMP_FILES:
        assert re.fullmatch(r"1[6-7]\d{14}", text), (rel, text)
        return "<timestamp>"
    if label == "meta" and rel == os.path.join("log", "runner"):
        return re.sub(r"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} ", "<time> ", text)
    if label == "meta" and rel == os.path.join("log", "files"):
        return re.sub(r"(?m)^([amd]) ([srdg]) \d+ ", r"\1 \2 <mtime> ", text)
    return text


@pytest.fixture(scope="module")
def real_runs(project: Project, real_gage: RealGage) -> dict[str, Run]:
    """What `gage run` makes for the same ops, flags and labels as `ours`."""
    runs_dir = project.dir.parent / "real-runs"

    def gage_run(*args: str, rc: int = 0) -> Run:
        before = {run.id for run in list_runs(str(runs_dir))}
        proc = real_gage("run", *args, "-y", "-q", runs_dir=runs_dir, project=project.dir,
                         check=False)
        assert proc.returncode == rc, proc.stdout + proc.stderr
        [run] = [run for run in list_runs(str(runs_dir)) if run.id not in before]
        return run

    return {
        "completed": gage_run("say", "msg=Hi there", "count=3", "-l", "done"),
        "error": gage_run("say", "code=3", "-l", "failed", rc=3),
        "staged": gage_run("say", "--stage", "-l", "waiting"),
        "pending": gage_run("prep", "-l", "broken", rc=2),
    }


# Deliberate difference (design §2.1): files gage leaves writable until
# finalize are 0o666 here, `0o666 & ~umask` in gage. Both are writable,
# which is all the fingerprint records.


@pytest.mark.parametrize("key", ["completed", "error", "staged", "pending"])
def test_gage_runs_writes_what_real_gage_writes(ours, real_runs, key):
    """Same op and flags: the same files with the same content and read-only state.

    Compared: every meta file (log/runner messages, log/files, manifest,
    log/patched, output), every run dir file, the `.project` and `.user`
    sidecars; only ids, times and mtimes are normalized.
    """
    assert run_fingerprint(ours.runs[key]) == run_fingerprint(real_runs[key])


# ---------------------------------------------------------------------
# Runs written by real gage, read by gage_runs


@pytest.fixture()
def gage_staged(project: Project, real_gage: RealGage, tmp_path: Path) -> Run:
    """A run staged by `gage run say --stage msg=Yo -l "from gage"`."""
    runs_dir = tmp_path / "runs"
    proc = real_gage("run", "say", "--stage", "msg=Yo", "-l", "from gage", "-y",
                     runs_dir=runs_dir, project=project.dir)
    [run] = list_runs(str(runs_dir))
    assert f'Run "{run.name}" is staged' in proc.stdout
    return run


def test_gage_runs_reads_a_run_staged_by_real_gage(gage_staged, project):
    """list_runs, run_status, meta_config, RunManifest and user attrs read gage's run."""
    run = gage_staged
    runs_dir = os.path.dirname(run.run_dir)
    assert (run.opref.op_ns, run.opref.op_name) == ("proj", "say")
    assert run_status(run) == "staged"
    assert meta_config(run) == {**PROJECT_CONFIG, "msg": "Yo"}
    assert meta_opdef(run).as_json() == project.opdef("say").as_json()
    assert run_user_attrs(run) == {"label": "from gage"}
    manifest = list(RunManifest(run))
    assert [(entry.type, entry.path) for entry in manifest] == [
        ("s", "gage.toml"),
        ("s", "say.py"),
    ]
    for entry in manifest:
        assert entry.digest == file_sha256(os.path.join(run.run_dir, entry.path))
    assert 'msg = "Yo"' in Path(run.run_dir, "say.py").read_text()
    assert find_run(runs_dir, run.name).id == run.id
    assert find_run(runs_dir, run.id[:8]).id == run.id


def test_gage_runs_execs_a_run_staged_by_real_gage(gage_staged, real_gage):
    """gage_runs runs and finalizes gage's staged run; gage then shows it completed."""
    run = gage_staged
    assert exec_and_finalize(run) == 0
    assert run_status(run) == "completed"
    out = real_gage("show", run.name, runs_dir=os.path.dirname(run.run_dir)).stdout
    sections = parse_show(out)
    assert sections["header"][1:] == [["proj:say", "completed"], ["from gage"]]
    assert sections["Output"] == [["Yo"]] * 2


def test_real_gage_starts_a_run_staged_by_gage_runs(project, real_gage, tmp_path):
    """`gage run --start <name>` runs a run that gage_runs staged, to completion."""
    runs_dir = tmp_path / "runs"
    run = project.stage("say", runs_dir, "to start", msg="Started")
    proc = real_gage("run", "--start", run.name, "-y", runs_dir=runs_dir, project=project.dir)
    assert proc.stdout.splitlines() == ["Started", "Started"]
    assert run_status(run) == "completed"
    assert json.loads(Path(run.meta_dir, "summary.json").read_text()) == {
        "attributes": {"said": "Started"},
        "metrics": {"count": 2},
    }
