"""Executing and finalizing runs: output capture, proc files, status, summary."""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
import threading
import time

import pytest

from gage_runs import (
    OpCmd,
    OpDef,
    OpRef,
    RunExecError,
    exec_run,
    finalize_run,
    init_run_meta,
    make_run,
    run_status,
)
from gage_runs.output import read_output_index


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def read(path, binary=False):
    with open(path, "rb" if binary else "r") as f:
        return f.read()


def new_run(tmp_path, args, opdata=None, env=None):
    run = make_run(OpRef("test", "op"), str(tmp_path / "runs"))
    init_run_meta(run, OpDef("op", opdata or {}), {}, OpCmd(args, env or {}))
    return run


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_output_lines_and_index(tmp_path):
    """Each line keeps its terminator (\\n or \\r), bytes < 9 are dropped,
    and every line gets a 9-byte (epoch ms, stream 0) index record."""
    run = new_run(tmp_path, py(
        "import sys; sys.stdout.write('a\\x01b\\nc\\r\\nlast'); "
        "sys.stderr.write('')"
    ))
    before = time.time_ns() // 1_000_000
    exec_run(run)
    out = f"{run.meta_dir}/output/40_run"
    assert read(out, binary=True) == b"ab\nc\r\nlast"
    index = read_output_index(out + ".index")
    assert len(read(out + ".index", binary=True)) == 9 * 4
    assert len(index) == 4
    assert all(stream == 0 and ms >= before for ms, stream in index)
    assert mode(out) == mode(out + ".index") == 0o444


def test_stderr_is_merged(tmp_path):
    """stderr goes into the same output as stdout."""
    run = new_run(tmp_path, py("import sys; print('out', flush=True); print('err', file=sys.stderr)"))
    exec_run(run)
    assert read(f"{run.meta_dir}/output/40_run") == "out\nerr\n"


def test_run_env(tmp_path, monkeypatch):
    """RUN_ID, RUN_DIR, PARENT_PWD and proc/env.json go over the base env."""
    monkeypatch.setenv("RUN_ID", "from-parent")
    monkeypatch.setenv("FROM_PARENT", "yes")
    run = new_run(
        tmp_path,
        py("import os; print(os.environ['RUN_ID'], os.environ['RUN_DIR'], "
           "os.environ['PARENT_PWD'], os.environ['X'], os.environ['FROM_PARENT'], os.getcwd())"),
        env={"X": "from-cmd", "FROM_PARENT": "from-cmd"},
    )
    exec_run(run)
    assert read(f"{run.meta_dir}/output/40_run").split() == [
        run.id, run.run_dir, os.getcwd(), "from-cmd", "from-cmd", run.run_dir,
    ]


def test_base_env_replaces_the_worker_env(tmp_path, monkeypatch):
    """A scrubbed base env keeps worker secrets out of the run."""
    monkeypatch.setenv("GAGE_BROKER_URL", "redis://:secret@host")
    run = new_run(tmp_path, py("import os; print(os.environ.get('GAGE_BROKER_URL'))"))
    exec_run(run, base_env={"PATH": os.environ["PATH"]})
    assert read(f"{run.meta_dir}/output/40_run") == "None\n"


def test_shell_string_and_shebang(tmp_path):
    """A string runs in a shell; a `#!` string keeps its line breaks."""
    run = new_run(tmp_path, "echo one; echo two")
    exec_run(run)
    assert read(f"{run.meta_dir}/output/40_run") == "one\ntwo\n"
    run = new_run(tmp_path, f"#!{sys.executable}\nx = 1\nprint(x + 1)\n")
    exec_run(run)
    assert read(f"{run.meta_dir}/output/40_run") == "2\n"


def test_started_and_proc_lock_while_running(tmp_path):
    """`started` is written before the spawn; proc/lock holds the pid while it runs."""
    flag = tmp_path / "go"
    run = new_run(tmp_path, py(
        f"import os, time\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.05)"
    ))
    thread = threading.Thread(target=exec_run, args=(run,))
    thread.start()
    lock = f"{run.meta_dir}/proc/lock"
    for _ in range(200):
        if os.path.exists(lock):
            break
        time.sleep(0.02)
    assert os.path.exists(f"{run.meta_dir}/started")
    assert run_status(run) == "running"
    pid = int(read(lock))
    assert os.getpgid(pid) == pid, "the run leads its own process group"
    assert mode(lock) == 0o444
    flag.touch()
    thread.join(10)
    assert not os.path.exists(lock)
    assert not os.path.exists(f"{run.meta_dir}/proc/exit")
    assert run_status(run) == "pending"  # Gage: not staged here, and no exit yet


def test_output_is_readable_while_running(tmp_path):
    """Output reaches the file line by line while the run is still going."""
    flag = tmp_path / "go"
    run = new_run(tmp_path, py(
        "import os, time\nprint('first', flush=True)\n"
        f"while not os.path.exists({str(flag)!r}): time.sleep(0.05)\nprint('second')"
    ))
    thread = threading.Thread(target=exec_run, args=(run,))
    thread.start()
    out = f"{run.meta_dir}/output/40_run"
    for _ in range(200):
        if os.path.exists(out) and read(out):
            break
        time.sleep(0.02)
    assert read(out) == "first\n"
    flag.touch()
    thread.join(10)
    assert read(out) == "first\nsecond\n"


def test_failed_run_raises_with_exit_code(tmp_path):
    """A non-zero exit raises RunExecError; finalize records it; status error."""
    run = new_run(tmp_path, py("import sys; sys.exit(3)"))
    with pytest.raises(RunExecError) as e:
        exec_run(run)
    assert (e.value.phase_name, e.value.exit_code) == ("run", 3)
    finalize_run(run, e.value.exit_code)
    assert read(f"{run.meta_dir}/proc/exit") == "3"
    assert run_status(run) == "error"


def test_signal_exit_is_terminated(tmp_path):
    """A run killed by a signal has a negative exit code and ends terminated."""
    run = new_run(tmp_path, py("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"))
    with pytest.raises(RunExecError) as e:
        exec_run(run)
    assert e.value.exit_code == -15
    finalize_run(run, e.value.exit_code)
    assert run_status(run) == "terminated"


def test_missing_program_is_exit_127(tmp_path):
    """A command that cannot start is a failed run, not a crash."""
    run = new_run(tmp_path, ["no-such-program-here"])
    with pytest.raises(RunExecError) as e:
        exec_run(run)
    assert e.value.exit_code == 127


def test_finalize_run_summary_and_modes(tmp_path):
    """finalize: summary.json from the run's summary file, stopped, proc/exit,
    generated files logged and read-only, every meta file read-only."""
    run = new_run(tmp_path, py(
        "import json; json.dump({'metrics': {'loss': 0.5}, 'run': {'label': 'L'}}, "
        "open('summary.json', 'w')); open('out.txt', 'w').write('x')"
    ))
    exec_run(run)
    finalize_run(run)
    meta = run.meta_dir
    assert read(f"{meta}/summary.json") == (
        '{\n  "metrics": {\n    "loss": 0.5\n  },\n  "run": {\n    "label": "L"\n  }\n}'
    )
    assert read(f"{meta}/proc/exit") == "0"
    assert run_status(run) == "completed"
    files_log = read(f"{meta}/log/files").splitlines()
    assert [line.split(" ")[::3] for line in files_log] == [["a", "out.txt"], ["a", "summary.json"]]
    assert all(line.split(" ")[1] == "g" for line in files_log)
    manifest = read(f"{meta}/manifest").splitlines()
    assert [line.split(" ")[0::2] for line in manifest] == [["g", "out.txt"], ["g", "summary.json"]]
    for dirpath, _, names in os.walk(meta):
        for name in names:
            assert mode(os.path.join(dirpath, name)) == 0o444, name
    assert mode(f"{run.run_dir}/out.txt") == 0o444
    runner = read(f"{meta}/log/runner")
    assert "Using run summary summary.json" in runner
    assert runner.rstrip().endswith("Finalizing run files (see manifest)")


def test_summary_filename_from_opdef_yaml(tmp_path):
    """`summary.filename` names the summary file; YAML works too."""
    run = new_run(tmp_path, py("open('out.yaml', 'w').write('attributes:\\n  a: 1\\n')"),
                  {"summary": {"filename": "out.yaml"}})
    exec_run(run)
    finalize_run(run)
    assert read(f"{run.meta_dir}/summary.json") == '{\n  "attributes": {\n    "a": 1\n  }\n}'


def test_malformed_summary_still_finalizes(tmp_path):
    """A broken summary file is logged, not fatal: the run still finalizes."""
    run = new_run(tmp_path, py("open('summary.json', 'w').write('{oops')"))
    exec_run(run)
    finalize_run(run)
    assert read(f"{run.meta_dir}/summary.json") == "{}"
    assert "Error reading run summary summary.json" in read(f"{run.meta_dir}/log/runner")
    assert run_status(run) == "completed"


def test_finalize_hook_env_and_output(tmp_path):
    """The finalize hook gets lowercase run_id/run_dir (no project_dir)."""
    hook = py("import os; print(os.environ['run_id'], 'project_dir' in os.environ)")
    run = new_run(tmp_path, ["true"], {"exec": {"run": ["true"], "finalize": hook}})
    exec_run(run)
    finalize_run(run)
    assert read(f"{run.meta_dir}/output/50_finalize") == f"{run.id} False\n"


def test_background_children_do_not_hang_the_phase(tmp_path):
    """A child left holding the output pipe is killed once the run exits."""
    run = new_run(tmp_path, "sleep 60 & echo started")
    start = time.monotonic()
    exec_run(run)
    assert time.monotonic() - start < 10
    assert read(f"{run.meta_dir}/output/40_run") == "started\n"


def test_big_output_is_captured_whole(tmp_path):
    """Large output without line ends is captured completely."""
    run = new_run(tmp_path, py("import sys; sys.stdout.write('x' * 3_000_000)"))
    exec_run(run)
    assert os.path.getsize(f"{run.meta_dir}/output/40_run") == 3_000_000
    records = read(f"{run.meta_dir}/output/40_run.index", binary=True)
    assert len(records) % 9 == 0 and struct.unpack("!QB", records[:9])[1] == 0


def test_watcher_sees_the_process(tmp_path):
    """A watcher gets started/tick/finished and can stop the process group."""
    calls = []

    class Stopper:
        def started(self, proc: subprocess.Popen) -> None:
            calls.append("started")

        def tick(self, proc: subprocess.Popen) -> None:
            calls.append("tick")
            os.killpg(proc.pid, 15)

        def finished(self, proc: subprocess.Popen, exit_code: int) -> None:
            calls.append(("finished", exit_code))

    run = new_run(tmp_path, "sleep 30")
    with pytest.raises(RunExecError) as e:
        exec_run(run, watcher=Stopper())
    assert e.value.exit_code == -15
    assert calls[0] == "started" and "tick" in calls and calls[-1] == ("finished", -15)
