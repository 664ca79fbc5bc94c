"""Only the submitter can change a submitted run: two real Unix users.

User A stages and submits runs; user B, another local user (in A's group
in `group` mode), tries to change them before a worker (root) takes them:
renaming, deleting or writing A's command and source files fails, and a
run B did change (a module planted in its run dir, its manifest edited) is
refused by the keeper (`error`, `cannot-start`) instead of running B's code.
Needs root (the users are created and deleted here) and useradd.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.workers import Bed

from gage_queue.snapshots import queue_state
from gage_runs import OpCmd, OpDef, OpRef, init_run_meta, make_run, stage_run
from gage_runs.meta import run_for_meta_dir

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """\
import os
try:
    import planted  # not staged: only another user could have put it there
except ImportError:
    pass
with open(os.path.join(os.environ["COUNT_DIR"], os.environ["RUN_ID"]), "a") as f:
    f.write("ran\\n")
"""

PLANTED = """\
import os
open(os.path.join(os.environ["COUNT_DIR"], "PWNED-" + os.environ["RUN_ID"]), "w").close()
"""

STAGE_AND_SUBMIT = """\
import json, sys
from gage_runs import OpCmd, OpDef, OpRef, init_run_meta, make_run, stage_run
from gage_queue.broker.send import submit_run
from gage_queue.settings import Settings
spec = json.loads(sys.argv[1])
settings = Settings.from_env({"GAGE_RUNS": spec["runs"], "GAGE_BROKER_URL": spec["broker"]})
ids = []
for _ in range(spec["count"]):
    run = make_run(OpRef("project", "tamper"), spec["runs"])
    init_run_meta(run, OpDef("tamper", {"exec": "python script.py"}), {},
                  OpCmd(["python", "script.py"], {"COUNT_DIR": spec["counts"]}))
    stage_run(run, spec["project"])
    submit_run(run, settings=settings)
    ids.append(run.id)
print(json.dumps(ids))
"""

TAMPER = """\
import errno, json, os, sys
spec = json.loads(sys.argv[1])
meta, run_dir, scratch = spec["meta"], spec["run_dir"], spec["scratch"]
cmd, source = meta + "/proc/cmd.json", run_dir + "/script.py"
for name in ("cmd.json", "script.py"):
    with open(os.path.join(scratch, name), "w") as f:
        f.write('["sh", "-c", "echo B"]' if name == "cmd.json" else "print('B')")
results = {}
def attempt(name, action):
    try:
        action()
        results[name] = "done"
    except OSError as e:
        results[name] = errno.errorcode[e.errno]
def write(path, text):
    with open(path, "w") as f:
        f.write(text)
def edit_digest(path):
    with open(path) as f:
        lines = [line.split(" ", 2) for line in f]
    with open(path, "w") as f:  # in place: the manifest stays writable until finalize
        for kind, digest, name in lines:
            f.write(" ".join([kind, "0" * 64 if name == "script.py\\n" else digest, name]))
actions = {
    "rename over cmd.json": lambda: os.rename(scratch + "/cmd.json", cmd),
    "delete cmd.json": lambda: os.unlink(cmd),
    "write cmd.json": lambda: write(cmd, '["sh"]'),
    "chmod cmd.json": lambda: os.chmod(cmd, 0o666),
    "rename over a source file": lambda: os.rename(scratch + "/script.py", source),
    "delete a source file": lambda: os.unlink(source),
    "write a source file": lambda: write(source, "print('B')"),
    "rename the proc dir": lambda: os.rename(meta + "/proc", meta + "/proc.old"),
    "rename the meta dir": lambda: os.rename(meta, meta + ".old"),
    "rename the run dir": lambda: os.rename(run_dir, run_dir + ".old"),
    "plant a module": lambda: write(run_dir + "/planted.py", spec["planted"]),
    "edit the manifest": lambda: edit_digest(meta + "/manifest"),
}
for name in spec["actions"]:
    attempt(name, actions[name])
print(json.dumps(results))
"""

FORBIDDEN = ["rename over cmd.json", "delete cmd.json", "write cmd.json", "chmod cmd.json",
             "rename over a source file", "delete a source file", "write a source file",
             "rename the proc dir", "rename the meta dir", "rename the run dir"]
DENIED = {"EPERM", "EACCES"}


def _user_python() -> str | None:
    """A Python 3.x like this one that other users can run (this venv may sit in /root)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.realpath(sys.executable), shutil.which(version, path="/usr/bin")):
        if candidate and _others_can_reach(candidate):
            return candidate
    return None


def _others_can_reach(path: str) -> bool:
    mode = os.stat(path).st_mode
    if not mode & stat.S_IXOTH:
        return False
    parent = os.path.dirname(path)
    while parent != "/":
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(parent)
    return True


def _admin(tool: str) -> str | None:
    """An admin tool, found in the sbin dirs too (a plain user PATH lacks them)."""
    return shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""),
                                                    "/usr/sbin", "/sbin"]))


class Users:
    """Throwaway Unix users `a` and `b`, members of a throwaway group."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.group = f"gq-g-{tag}"
        self.a, self.b = f"gq-a-{tag}", f"gq-b-{tag}"
        subprocess.run([_admin("groupadd"), self.group], check=True)
        for name in (self.a, self.b):
            subprocess.run([_admin("useradd"), "-M", "-U", "-G", self.group, "-s", "/bin/false", name],
                           check=True)

    def delete(self) -> None:
        for name in (self.a, self.b):
            subprocess.run([_admin("userdel"), name], check=False)
        subprocess.run([_admin("groupdel"), self.group], check=False)

    def run_as(self, name: str, code: str, spec: dict, env: dict[str, str]) -> object:
        """Run Python `code` as user `name` (with its groups); its JSON output."""
        user = pwd.getpwnam(name)

        def become() -> None:
            os.initgroups(name, user.pw_gid)
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            os.umask(0o022)

        proc = subprocess.run([PYTHON, "-c", code, json.dumps(spec)], env=env,
                              preexec_fn=become, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)


PYTHON = _user_python()


@pytest.fixture
def users() -> Iterator[Users]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create throwaway users")
    if not all(_admin(tool) for tool in ("useradd", "userdel", "groupadd", "groupdel")):
        pytest.skip("no useradd, userdel, groupadd or groupdel")
    if PYTHON is None:
        pytest.skip("no Python other users can run")
    made = Users()
    try:
        yield made
    finally:
        made.delete()


@pytest.fixture
def reachable_checkout() -> Iterator[None]:
    """Let other users traverse to this checkout and this venv's packages, for the test.

    A clone made with `mktemp -d` is `0o700`: the users could not import
    gage_runs. Until the test ends, the import dirs themselves get `o+rx`
    (Python lists them) and each directory above them `o+x` (enter, not list).
    """
    targets = [REPO, *(Path(p) for p in sys.path if p.endswith("site-packages"))]
    changed: dict[Path, int] = {}
    for target in targets:
        for directory in [target, *target.parents]:
            mode = stat.S_IMODE(directory.stat().st_mode)
            need = stat.S_IXOTH | (stat.S_IROTH if directory == target else 0)
            if mode & need != need:
                changed.setdefault(directory, mode)
                directory.chmod(mode | need)
    try:
        yield
    finally:
        for directory, mode in changed.items():
            directory.chmod(mode)


@pytest.fixture
def shared_root(reachable_checkout: None) -> Iterator[Path]:
    """A dir every user can reach (pytest's tmp dir is root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="gage-tamper-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.system
@pytest.mark.parametrize("mode", ["world", "group"])
def test_only_the_submitter_can_change_a_submitted_run(users, shared_root, redis_server, mode):
    group = grp.getgrnam(users.group).gr_gid
    bed = Bed(shared_root, broker_url=redis_server.url, redis=redis_server)
    if mode == "world":
        bed.runs_dir.chmod(0o1777)  # as the README says: like /tmp
    else:
        os.chown(bed.runs_dir, 0, group)
        bed.runs_dir.chmod(0o3770)
    project = shared_root / "project-a"
    project.mkdir()
    (project / "script.py").write_text(SCRIPT)
    os.chown(project, pwd.getpwnam(users.a).pw_uid, -1)
    scratch = shared_root / "scratch-b"
    scratch.mkdir()
    os.chown(scratch, pwd.getpwnam(users.b).pw_uid, -1)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(shared_root), "GAGE_SHARED_MODE": mode,
           "PYTHONPATH": os.pathsep.join(_python_path(shared_root))}
    try:
        ids = users.run_as(users.a, STAGE_AND_SUBMIT, {
            "runs": str(bed.runs_dir), "broker": bed.broker_url, "counts": str(bed.counts_dir),
            "project": str(project), "count": 3}, env)
        untouched, planted, edited = (
            run_for_meta_dir(str(bed.runs_dir / f"{run_id}.meta")) for run_id in ids)

        def tamper(run, actions):
            return users.run_as(users.b, TAMPER, {
                "meta": run.meta_dir, "run_dir": run.run_dir, "scratch": str(scratch),
                "planted": PLANTED, "actions": actions}, env)

        tried = tamper(untouched, FORBIDDEN)
        assert {name: result for name, result in tried.items() if result not in DENIED} == {}
        assert tamper(planted, ["plant a module"]) == {"plant a module": "done"}
        assert tamper(edited, ["edit the manifest"]) == {"edit the manifest": "done"}

        worker = bed.start_worker("-c", "1", env=bed.worker_env(GAGE_SHARED_MODE=mode))
        assert bed.wait_status([untouched, planted, edited]) == {
            untouched.id: "completed", planted.id: "error", edited.id: "error"}
        assert (bed.counts_dir / untouched.id).read_text() == "ran\n"
        for run in (planted, edited):
            assert not (bed.counts_dir / run.id).exists()
            assert queue_state(run).record.reason.value == "cannot-start"
        assert not list(bed.counts_dir.glob("PWNED-*"))
        planted_file = f"{planted.run_dir}/planted.py"
        assert queue_state(planted).record.detail == (
            f"cannot start the run: {planted_file} belongs to {users.b} "
            f"(uid {pwd.getpwnam(users.b).pw_uid}), not to the run's submitter {users.a} "
            f"(uid {pwd.getpwnam(users.a).pw_uid})")
        assert (f"source file {edited.run_dir}/script.py does not match its staged digest"
                in queue_state(edited).record.detail)
        assert f"{planted_file} belongs to {users.b}" in worker.log()
    finally:
        bed.close()


def _python_path(shared_root: Path) -> list[str]:
    """This checkout and this venv's packages, for the users' Python.

    When that is another Python than this one (this venv's may sit where
    other users cannot reach, as in /root), redis-py also needs its
    `async_timeout` backport on Pythons before 3.11.3, which this venv
    lacks: `asyncio.timeout` is the same thing.
    """
    path = [str(REPO), *(entry for entry in sys.path if entry.endswith("site-packages"))]
    if os.path.realpath(sys.executable) != PYTHON:
        shim = shared_root / "shim"
        shim.mkdir(exist_ok=True)
        (shim / "async_timeout.py").write_text("from asyncio import timeout  # noqa: F401\n")
        path.insert(0, str(shim))
    return path


@pytest.mark.system
def test_a_queued_run_in_an_unsafe_runs_dir_is_refused(worker_bed):
    """A runs dir others can write without the sticky bit: anyone could swap the run."""
    run = worker_bed.stage()
    worker_bed.runs_dir.chmod(0o777)
    worker_bed.submit(run)
    worker_bed.start_worker("-c", "1")
    assert worker_bed.wait_status([run]) == {run.id: "error"}
    assert queue_state(run).record.detail == (
        f"cannot start the run: {worker_bed.runs_dir} is writable by others without the "
        f"sticky bit, so anyone could replace a run in it (chmod +t {worker_bed.runs_dir})")
    assert worker_bed.executions(run) == []


STAGE = """\
import json, sys
from gage_runs import OpCmd, OpDef, OpRef, init_run_meta, make_run, stage_run
spec = json.loads(sys.argv[1])
run = make_run(OpRef("project", "plain"), spec["runs"])
init_run_meta(run, OpDef("plain", {"exec": "python3 script.py"}), {},
              OpCmd(["python3", "script.py"], {"COUNT_DIR": spec["counts"]}))
stage_run(run, spec["project"])
print(json.dumps(run.meta_dir))
"""

EXEC_AND_FINALIZE = """\
import json, sys
from gage_runs import exec_run, finalize_run, run_meta_path
from gage_runs.meta import run_for_meta_dir
run = run_for_meta_dir(json.loads(sys.argv[1])["meta"])
exec_run(run)
finalize_run(run)
print(json.dumps(open(run_meta_path(run, "proc", "exit")).read()))
"""


def test_a_worker_account_finalizes_another_users_run(users, shared_root):
    """The worker is not the submitter: it may not chmod the submitter's files, and the
    sticky meta dir keeps it from replacing them, yet finalize completes."""
    runs = shared_root / "runs"
    runs.mkdir()
    runs.chmod(0o1777)
    project = shared_root / "project-a"
    project.mkdir()
    (project / "script.py").write_text("print('hi')\n")
    counts = shared_root / "counts"
    counts.mkdir(mode=0o777)
    counts.chmod(0o777)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(shared_root),
           "PYTHONPATH": os.pathsep.join(_python_path(shared_root))}
    meta = users.run_as(users.a, STAGE, {"runs": str(runs), "project": str(project),
                                         "counts": str(counts)}, env)
    assert users.run_as(users.b, EXEC_AND_FINALIZE, {"meta": meta}, env) == "0"
    assert (Path(meta) / "stopped").exists()
    assert (Path(meta) / "manifest").read_text().startswith("s ")


@pytest.mark.system
def test_a_run_that_staged_no_files_is_not_refused(worker_bed):
    """No source code, so no run dir until exec makes it: nothing to have tampered with."""
    empty = worker_bed.root / "empty-project"
    empty.mkdir()
    run = make_run(OpRef("empty", "echo"), str(worker_bed.runs_dir))
    init_run_meta(run, OpDef("echo", {"exec": "echo hi"}), {}, OpCmd("echo hi", {}))
    stage_run(run, str(empty))
    assert not os.path.exists(run.run_dir)
    worker_bed.submit(run)
    worker_bed.start_worker("-c", "1")
    assert worker_bed.wait_status([run]) == {run.id: "completed"}
