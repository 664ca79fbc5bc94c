"""The README's commands, run as a user would run them, and every block of it accounted for.

Every fenced block of README.md is exercised here, or listed as illustrative with
the reason (`test_every_readme_block_is_accounted_for` fails on a new block or
line that nothing covers):

- Every line of the bash blocks runs against a real worker on the embedded
  broker, in order (`test_every_readme_command_runs`), with the README's
  placeholders (RUN, ...) filled in: RUN is a run queued by an earlier line,
  except for `gage-submit queue`, whose RUN... are the runs real Gage staged
  (`gage run --stage`, with the real Gage CLI on PATH). A line with shell
  syntax (`eval "$(...)"`) runs through bash as written. The lines in
  ELSEWHERE are not run there, each for the reason given:
- The quick start runs as a script after `examples/demo.sh` (what `make demo`
  runs) made its runs (`test_quick_start_demo_then_its_block`).
- Every `gage-worker worker ...` and `gage-worker beat ...` line starts as
  written, on the embedded broker, until it is ready (or has submitted).
- "Scaling out with Redis" runs as a block against a private redis-server,
  its two host-specific values (the Redis URL, `/mnt/runs`) replaced.
- The TOML block is a schedule the beat loads (every job's op and flags
  checked) next to the example project.
- The rest is illustrative: the architecture diagram; lines that need what
  a test cannot have (a Docker engine, a package index, Flower, minutes of
  benchmarks), each checked as far as it can be elsewhere (ELSEWHERE).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from support.workers import wait_for

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
HELLO = REPO / "examples" / "hello"

# README lines the in-order run leaves out, and where each is exercised or why it is
# only illustrative.
ELSEWHERE = {
    r"make demo": "test_quick_start_demo_then_its_block runs examples/demo.sh, the demo"
                  " target's command; test_make_demo_installs_no_test_extras checks the target",
    r"make test": ".ci/run runs it: the whole suite, which includes this file",
    r"\. \.venv/bin/activate": "the quick start block: run as a script after the demo",
    r"export GAGE_RUNS=\$PWD/\.demo/runs": "the quick start block: run as a script after the demo",
    r"export GAGE_BROKER_URL=redis://\S+": "the Redis block, run against a private redis-server",
    r"export GAGE_RUNS=/mnt/runs": "the Redis block, run against a private redis-server",
    r"gage-worker worker( .*)?": "started as written by test_worker_and_beat_lines_start",
    r"gage-worker beat --schedule examples/schedule\.toml":
        "started as written by test_worker_and_beat_lines_start",
    r"mkdir -p runs && .*docker compose -f deploy/compose\.yaml up.*":
        "illustrative: needs a Docker engine; tests/test_deploy.py validates the compose file"
        " (docker-compose config) and runs its commands against Redis from its config",
    r"pip install 'gage-queue\[flower\]'":
        "illustrative: installs from a package index; test_flower_extra_is_declared checks"
        " the extra",
    r"celery -A gage_worker flower .*": "illustrative: needs Flower, which is not a test"
                                        " dependency",
    r"python bench/\S+\.py( --\w+)?": "illustrative: benchmarks take minutes; run by hand",
    r"gage-submit priority RUN \d+": "test_scheduling's priority test runs it on two hosts,"
                                     " on a run that waits (the RUN here has ended)",
    r"gage-worker drain": "test_scheduling's drain test runs it (with a node name): here it"
                          " would stop the worker the other lines use",
    r"cd examples/pipeline|gage-submit prepare|gage-submit train lr=\S+ -l sweep-1"
    r"|gage-submit evaluate --after label:sweep-1 --wait|gage-submit logs 1":
        "the pipeline block: test_readme_pipeline_block_runs_as_written runs it as a script",
    r"pip install 'gage-queue\[view\]'":
        "illustrative: installs from a package index; the test extra installs the view extra",
    r"gage-submit view( --\S+)*( \S+)?":
        "a server: test_readme_view_lines_serve starts each as written (--port 0 added,"
        " 0.0.0.0 made a loopback address) and checks what it says and serves",
}
NOT_BASH = {  # (language, first line) -> how the block is checked
    ("", " laptop                        shared runs dir (NFS, or local)              worker hosts"):
        "illustrative: the architecture diagram",
    ("toml", "[[job]]"): "test_readme_schedule_is_a_schedule loads it as the beat does",
    ("toml", "[train]"): "test_readme_pipeline_block_runs_as_written: it is in the example's"
                         " Gage file",
}
DAEMONS = re.compile(r"gage-worker (worker|beat)\b")
SHELL_SYNTAX = re.compile(r"""\$\(|[|;&<>`]|^eval """)


def on_path(env: dict[str, str]) -> dict[str, str]:
    """`env` with this interpreter's scripts (gage-submit, gage-worker) first on PATH.

    As a user who activated the venv has them, whatever PATH pytest got.
    """
    scripts = sysconfig.get_path("scripts")
    return {**env, "PATH": os.pathsep.join([scripts, env.get("PATH") or os.defpath])}


def readme_blocks() -> list[tuple[str, str]]:
    """Every fenced block of the README: (language, text)."""
    return re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(), re.S | re.M)


def block_lines(text: str) -> list[str]:
    """A bash block's command lines, comments dropped."""
    lines = [line.split("  #")[0].strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def readme_commands() -> list[str]:
    """The command lines of the README's bash blocks, in order."""
    return [line for lang, text in readme_blocks() if lang == "bash" for line in block_lines(text)]


def elsewhere(line: str) -> str | None:
    """Why a line is not run in order (ELSEWHERE), or None."""
    return next((why for pattern, why in ELSEWHERE.items() if re.fullmatch(pattern, line)), None)


def the_block(first_line: str) -> str:
    """The README bash block whose first command line is `first_line`."""
    return next(text for lang, text in readme_blocks()
                if lang == "bash" and block_lines(text)[:1] == [first_line])


def runnable(line: str, runs: list[str], staged: list[str]) -> list[str]:
    """A README line as argv: optional [--x y] parts kept, placeholders filled.

    `gage-submit queue` gets the runs Gage staged; other lines the queued ones.
    A line with shell syntax runs through bash as written.
    """
    if SHELL_SYNTAX.search(line):
        assert "RUN" not in line, line
        return ["bash", "-c", line]
    line = re.sub(r"\[(-[^\]]+)\]", r"\1", line)
    argv = shlex.split(line)
    if argv[:2] == ["gage-submit", "queue"]:
        runs, staged[:] = list(staged), []
    filled = []
    for arg in argv:
        if arg == "RUN...":
            filled.extend(runs)
        elif arg == "RUN":
            filled.append(runs[0])
        else:
            filled.append(arg)
    return filled


def test_every_readme_block_is_accounted_for():
    """Each block is bash (each line run in order, or in ELSEWHERE) or in NOT_BASH; each
    ELSEWHERE entry still matches a line."""
    blocks = readme_blocks()
    for lang, text in blocks:
        if lang != "bash":
            first = text.splitlines()[0] if text else ""
            assert (lang, first) in NOT_BASH, f"a new ```{lang} block: {first!r}"
    assert {(lang, text.splitlines()[0]) for lang, text in blocks if lang != "bash"} == set(NOT_BASH)
    lines = readme_commands()
    for pattern in ELSEWHERE:
        assert any(re.fullmatch(pattern, line) for line in lines), f"stale: {pattern}"
    for line in lines:  # a daemon line in order would block the run: it must be elsewhere
        assert not DAEMONS.match(line) or elsewhere(line), line


@pytest.mark.system
def test_quick_start_demo_then_its_block(tmp_path):
    """examples/demo.sh (what `make demo` runs) submits, follows, waits, lists; then the
    quick start's block runs as written where the demo left its runs (`.demo/runs`
    next to a `.venv`)."""
    runs_dir = tmp_path / ".demo" / "runs"
    env = on_path({**os.environ, "GAGE_RUNS": str(runs_dir)})
    env.pop("GAGE_BROKER_URL", None)
    proc = subprocess.run(
        ["bash", str(REPO / "examples" / "demo.sh")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "epoch 5: loss=0.6065" in proc.stdout
    assert "2 runs: 2 completed" in proc.stderr
    assert proc.stdout.count("completed") >= 5
    assert "warning" not in proc.stdout.lower() + proc.stderr.lower()

    activate = Path(sys.prefix) / "bin" / "activate"
    if not activate.exists():
        pytest.skip(f"not run from a venv: no {activate} for the quick start's `. .venv/...`")
    (tmp_path / ".venv").symlink_to(sys.prefix)
    block = the_block(". .venv/bin/activate")
    env.pop("GAGE_RUNS")
    quick = subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert quick.returncode == 0, quick.stdout + quick.stderr
    assert len(re.findall(r"^\d+ +\S+ +hello:train .* completed", quick.stdout, re.M)) == 3
    assert re.search(r"^status: +completed$", quick.stdout, re.M), quick.stdout
    assert "output (last 3 lines):" in quick.stdout


def test_make_demo_installs_no_test_extras(tmp_path):
    """`make demo` installs gage-queue alone (no `[test]` extras: pytest, ruff, ...);
    `make test` installs the extras. `make -n` prints the commands without running them."""
    if shutil.which("make") is None:
        pytest.skip("no make")

    def commands(target: str) -> str:
        proc = subprocess.run(["make", "-n", "-C", str(REPO), target, f"VENV={tmp_path}/venv"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    demo = commands("demo")
    installs = [line for line in demo.splitlines() if "pip install" in line and " -e " in line]
    assert installs and all("[test]" not in line for line in installs), demo
    assert "bash examples/demo.sh" in demo
    test = commands("test")
    assert any("pip install" in line and "'.[test]'" in line for line in test.splitlines()), test


def test_flower_extra_is_declared():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(req.startswith("flower") for req in extras["flower"])


def test_readme_schedule_is_a_schedule(tmp_path):
    """The README's TOML block, next to the example project, loads as the beat loads a
    schedule: every job's Gage file, op and flags checked."""
    from gage_worker.beat.schedule import load_schedule

    [text] = [text for lang, text in readme_blocks() if (lang, text[:7]) == ("toml", "[[job]]")]
    (tmp_path / "hello").symlink_to(HELLO)
    (tmp_path / "schedule.toml").write_text(text)
    schedule = load_schedule(str(tmp_path / "schedule.toml"))
    assert [job.name for job in schedule.jobs] == ["nightly-train"]


@pytest.fixture
def embedded(worker_bed, real_gage, tmp_path):
    """The env of a runs dir served by a real worker on the embedded broker.

    PATH has this venv's commands, then the real `gage` (alone: not its
    venv's python).
    """
    gage_bin = tmp_path / "real-gage-bin"
    gage_bin.mkdir()
    (gage_bin / "gage").symlink_to(real_gage.gage)
    env = on_path(worker_bed.worker_env())
    env["PATH"] = os.pathsep.join([env["PATH"], str(gage_bin)])
    env.update(TERM="unknown", COLUMNS="160")
    worker_bed.start_worker("--concurrency", "2", "-Q", "gage,gpu", env=env)
    return env


@pytest.mark.system
def test_every_readme_command_runs(embedded):
    """Each README command line (but ELSEWHERE's) exits 0 against a real worker."""
    commands = [line for line in readme_commands() if not elsewhere(line)]
    assert any(line.startswith("gage-submit train") for line in commands)
    # The quick start's `list` and `show 1` follow `make demo`: one run first.
    first = subprocess.run(["gage-submit", "train", "epochs=1", "--wait"], cwd=HELLO,
                           env=embedded, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    runs: list[str] = []
    staged: list[str] = []
    for line in commands:
        argv = runnable(line, runs or ["1"], staged)
        proc = subprocess.run(
            argv, cwd=HELLO, env=embedded, capture_output=True, text=True, timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, f"{line}\n{proc.stdout}{proc.stderr}"
        runs.extend(re.findall(r"^queued\s+(\S+)", proc.stdout, re.M))
        staged.extend(re.findall(r'^Run "(\S+)" is staged', proc.stdout, re.M))
    assert len(runs) >= 6
    assert any(line.startswith("gage-submit queue") for line in commands)
    assert any(line.startswith("eval ") for line in commands)
    assert not staged, f"runs staged by Gage but never queued: {staged}"


@pytest.mark.system
def test_readme_pipeline_block_runs_as_written(embedded):
    """The `depends` pipeline, as a script from the repo root against a real worker:
    prepare, a sweep that waits for it and takes its data, and evaluate, after the sweep,
    reading its summary. The TOML block shown is in the example's Gage file (its ops' settings)."""
    import tomllib

    toml = next(text for lang, text in readme_blocks() if (lang, text[:7]) == ("toml", "[train]"))
    example = tomllib.loads((REPO / "examples" / "pipeline" / "gage.toml").read_text())
    for op, shown in tomllib.loads(toml).items():
        assert shown.items() <= example[op].items(), op
    block = the_block("cd examples/pipeline")
    proc = subprocess.run(["bash", "-e", "-c", block], cwd=REPO, env=embedded,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # waiting for prepare, or queued if it completed before the sweep's submit
    assert len(re.findall(r"^(waiting|queued) +\S+ +\S+ +lr=", proc.stdout, re.M)) == 3
    assert re.search(r"^3 of 3 runs completed; best: \S+ lr=0\.2 loss=0\.0", proc.stdout,
                     re.M), proc.stdout


class Daemon:
    """A README line started in the background, its output in a log file."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self.terminated = False
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        def logged() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited early:\n{self.log()}")
            return text in self.log()

        wait_for(logged, timeout, f"{text!r} in {self.log_path}")

    def wait_ready(self) -> None:
        """A worker says `NODE ready.` once it consumes."""
        self.wait_for_log(" ready.")

    def terminate(self) -> None:
        """One SIGTERM (a worker's warm shutdown), if it still runs."""
        if self.proc.poll() is None and not self.terminated:
            self.terminated = True
            self.proc.terminate()

    def kill(self) -> None:
        """SIGKILL to its group (a worker's pool too)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (a worker's warm shutdown), then SIGKILL to its group if it hangs."""
        self.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.mark.system
def test_worker_and_beat_lines_start(tmp_path):
    """Every `gage-worker worker ...` line of the README starts a worker as written (on the
    embedded broker) and `gage-worker beat --schedule ...` submits the schedule's due job;
    each stops cleanly on SIGTERM. Each line runs on a runs dir of its own, so none leans on
    another's; they start and stop side by side (a worker's warm shutdown on the embedded
    broker takes seconds: one after another they took half a minute)."""
    daemons = list(dict.fromkeys(line for line in readme_commands() if DAEMONS.match(line)))
    assert len(daemons) >= 4, daemons
    env = on_path({k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))})
    started = []
    try:
        for n, line in enumerate(daemons):
            runs_dir = tmp_path / f"runs-{n}"
            runs_dir.mkdir()
            started.append(Daemon(shlex.split(line), REPO, {**env, "GAGE_RUNS": str(runs_dir)},
                                  tmp_path / f"daemon-{n}.log"))
        for line, daemon in zip(daemons, started, strict=True):
            if line.startswith("gage-worker beat"):
                daemon.wait_for_log("smoke-train: submitted")
            else:
                daemon.wait_ready()
    finally:
        for daemon in started:
            daemon.terminate()
        for daemon in started:
            daemon.stop()
    for daemon in started:
        assert daemon.proc.returncode in (0, -signal.SIGTERM), daemon.log()
        assert "ERROR" not in daemon.log() and "error:" not in daemon.log(), daemon.log()


@pytest.mark.system
def test_scaling_out_block_runs_on_a_private_redis(redis_server, tmp_path):
    """"Scaling out with Redis": its exports (the URL and /mnt/runs replaced by a private
    redis-server's and a temp dir), its worker line started, its submit line run; the
    run completes."""
    block = block_lines(the_block("export GAGE_BROKER_URL=redis://:password@redis.internal:6379/0"))
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    env = on_path({k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))})
    workers = []
    try:
        for n, line in enumerate(block):
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                value = {"/mnt/runs": str(runs_dir)}.get(value, value)
                if name == "GAGE_BROKER_URL":
                    value = redis_server.url
                env[name] = value
            elif DAEMONS.match(line):
                workers.append(Daemon(shlex.split(line), tmp_path, env,
                                      tmp_path / f"worker-{n}.log"))
                workers[-1].wait_ready()
            else:
                proc = subprocess.run(shlex.split(line), cwd=HELLO, env=env,
                                      capture_output=True, text=True, timeout=60)
                assert proc.returncode == 0, proc.stdout + proc.stderr
                [run] = re.findall(r"^queued\s+\S+\s+(\S+)", proc.stdout, re.M)
        assert workers and env["GAGE_BROKER_URL"] == redis_server.url
        waited = subprocess.run(["gage-submit", "wait", run], cwd=HELLO, env=env,
                                capture_output=True, text=True, timeout=120)
        assert waited.returncode == 0, waited.stdout + waited.stderr
    finally:
        for worker in workers:  # nothing is checked of its shutdown: no warm one to wait for
            worker.kill()


def test_readme_view_lines_serve(tmp_path):
    """Each `gage-submit view` line of the README starts, says how it is reached, serves."""
    from support.browser import start_view, view_missing

    missing = view_missing()
    if missing:
        pytest.skip(missing)
    lines = [line for line in readme_commands() if line.startswith("gage-submit view")]
    assert lines, "the README shows how to start the view"
    (tmp_path / "runs").mkdir()
    for line in lines:
        args = shlex.split(line)[2:]
        # Tests listen on loopback only: a non-default loopback address takes the
        # path any other address takes (a token in the URL).
        args = ["127.0.0.2" if arg == "0.0.0.0" else arg for arg in args]
        server = start_view(str(tmp_path / "runs"), *args)
        try:
            cookie = None
            assert (server.token is not None) == bool(args), (line, server.banner)
            if server.token:
                assert server.get("/")[0] == 403  # no token, no page
                status, headers, _ = server.get(f"/?token={server.token}")
                assert status == 303
                cookie = headers["set-cookie"].split(";")[0]
            status, _, page = server.get("/", cookie=cookie)
            assert status == 200 and b"<table" in page, line
        finally:
            server.stop()
