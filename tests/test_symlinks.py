"""No symlink games: a symlink planted where gage-queue writes is an error, never a write elsewhere.

Everyone who can write the runs dir can plant links in a run's `log/`,
`output/`, `queue/` (or replace those dirs by links). Each write refuses
them with UnsafePathError; the link's target is untouched.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
from support.workers import wait_for

from gage_queue.broker.send import enqueue_run
from gage_runs import OpCmd, OpDef, OpRef, init_run_meta, make_run
from gage_runs.files_log import RunManifest, RunManifestEntry
from gage_runs.fsmode import (
    UnsafePathError,
    append_text,
    make_dirs,
    set_readonly,
    walk_once,
    write_text,
)
from gage_runs.meta import runner_log, write_timestamp
from gage_runs.output import OutputCapture
from gage_runs.status import run_status

SECRET = "the worker's own file\n"


@pytest.fixture
def run(tmp_path):
    run = make_run(OpRef("p", "op"), str(tmp_path / "runs"))
    init_run_meta(run, OpDef("op", {"exec": "true"}), {}, OpCmd(["true"], {}))
    return run


@pytest.fixture
def target(tmp_path) -> Path:
    """A file outside the runs dir that the worker could write."""
    path = tmp_path / "outside" / "precious"
    path.parent.mkdir()
    path.write_text(SECRET)
    path.chmod(0o600)
    return path


def _plant(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() or link.is_symlink():
        link.unlink()
    os.symlink(target, link)


def _untouched(target: Path) -> None:
    assert target.read_text() == SECRET
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_runner_log_refuses_a_planted_file_link(run, target):
    log = Path(run.meta_dir, "log", "runner")
    _plant(log, target)
    with pytest.raises(UnsafePathError, match=f"refusing to follow the symlink {log}"):
        runner_log(run, "Starting run")
    _untouched(target)


def test_writes_refuse_a_log_dir_replaced_by_a_link(run, target):
    log_dir = Path(run.meta_dir, "log")
    os.rename(log_dir, Path(run.meta_dir, "log.orig"))
    _plant(log_dir, target.parent)
    for write in (lambda: runner_log(run, "x"),
                  lambda: write_text(str(log_dir / "files"), "x"),
                  lambda: append_text(str(log_dir / "files"), "x"),
                  lambda: make_dirs(str(log_dir / "sub"))):
        with pytest.raises(UnsafePathError, match=f"refusing to follow the symlink {log_dir}"):
            write()
    _untouched(target)


def test_write_text_refuses_to_replace_a_link_and_leaves_no_temp(run, target):
    path = Path(run.meta_dir, "queue", "heartbeat")
    _plant(path, target)
    with pytest.raises(UnsafePathError, match=f"refusing to replace the symlink {path}"):
        write_text(str(path), "{}", readonly=False)  # as gage_queue.queue_meta writes
    _untouched(target)
    assert sorted(os.listdir(path.parent)) == ["heartbeat"]
    assert path.is_symlink()


def test_meta_files_refuse_links(run, target):
    _plant(Path(run.meta_dir, "started"), target)
    with pytest.raises(UnsafePathError):
        write_timestamp(run, "started")
    _untouched(target)


def test_set_readonly_and_the_manifest_refuse_links(run, target):
    manifest = Path(run.meta_dir, "manifest")
    _plant(manifest, target)
    with pytest.raises(UnsafePathError):
        RunManifest(run).write([RunManifestEntry("s", "0" * 64, "x.py")])
    with pytest.raises(UnsafePathError):
        set_readonly(str(manifest))
    _untouched(target)


def test_a_fifo_is_not_written(run, target):
    fifo = Path(run.meta_dir, "log", "runner")
    fifo.unlink()
    os.mkfifo(fifo)
    with pytest.raises(UnsafePathError, match="not a regular file"):
        runner_log(run, "x")  # would block forever on a FIFO without a reader


def test_output_capture_refuses_links(run, target):
    output = Path(run.meta_dir, "output", "40_run")
    for link in (output, Path(f"{output}.index")):
        _plant(link, target)
        stream = io.BufferedReader(io.BytesIO(b"line\n"))
        with pytest.raises(UnsafePathError):
            OutputCapture(str(output), stream).start()
        assert stream.closed
        link.unlink()
    _untouched(target)


def test_ordinary_writes_still_work(run):
    write_text(str(Path(run.meta_dir, "queue", "x")), "1", readonly=False)
    runner_log(run, "still fine")
    assert "still fine" in Path(run.meta_dir, "log", "runner").read_text()
    set_readonly(str(Path(run.meta_dir, "queue", "x")))
    assert stat.S_IMODE(os.stat(Path(run.meta_dir, "queue", "x")).st_mode) == 0o444


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_walk_once_refuses_links_as_a_fresh_walk_does(run, target):
    log = Path(run.meta_dir, "log", "runner")
    before = _open_fds()
    with walk_once():
        runner_log(run, "walked once")  # the meta dir, log/ and log/runner are now kept open
        _plant(log, target)
        runner_log(run, "again")  # into the file it opened, not through the link
        with pytest.raises(UnsafePathError, match="refusing to replace the symlink"):
            write_text(str(log), "x")
    _untouched(target)
    assert _open_fds() == before
    with pytest.raises(UnsafePathError, match=f"refusing to follow the symlink {log}"):
        runner_log(run, "after the block")  # a fresh open refuses the link


def test_walk_once_never_follows_a_dir_swapped_for_a_link_after_its_walk(run, target):
    log_dir = Path(run.meta_dir, "log")
    with walk_once():
        runner_log(run, "first")
        os.rename(log_dir, Path(run.meta_dir, "log.moved"))
        _plant(log_dir, target.parent)
        runner_log(run, "second")  # into the dir it walked to, wherever it is now
        write_text(str(log_dir / "files"), "x")
    _untouched(target)
    moved = Path(run.meta_dir, "log.moved")
    assert "second" in (moved / "runner").read_text()
    assert (moved / "files").read_text() == "x"
    with pytest.raises(UnsafePathError):  # outside the block, a fresh walk refuses the link
        runner_log(run, "third")


def test_walk_once_blocks_nest_and_close_their_descriptors(run):
    before = _open_fds()
    with walk_once():
        with walk_once():
            write_text(str(Path(run.meta_dir, "queue", "a")), "1", readonly=False)
        assert _open_fds() != before  # the outer block keeps them
        write_text(str(Path(run.meta_dir, "queue", "b")), "2", readonly=False)
    assert _open_fds() == before
    assert Path(run.meta_dir, "queue", "b").read_text() == "2"
    with pytest.raises(RuntimeError), walk_once():
        runner_log(run, "then it fails")
        raise RuntimeError("a failed write")
    assert _open_fds() == before


@pytest.mark.parametrize("where", ["log/runner", "output/40_run", "queue/cancel", "queue/lock"])
def test_a_worker_refuses_a_run_with_planted_links(redis_bed, target, where):
    """A real worker: the run with a planted link fails, logged; the link target is untouched."""
    planted = redis_bed.submit(redis_bed.stage())
    _plant(Path(planted.meta_dir, *where.split("/")), target)  # before any worker can take it
    worker = redis_bed.start_worker("-c", "1")
    enqueue_run(planted.id, settings=redis_bed.settings())
    expected = ("its lock file is not a regular file" if where == "queue/lock"
                else "cannot start the run: refusing to ")

    def refusals() -> list[str]:  # (reconcile at start may refuse to follow it first)
        return [line for line in worker.log().splitlines() if where in line and expected in line]

    wait_for(refusals, 15, "the worker to refuse the planted link")
    good = redis_bed.stage_and_submit(1)
    assert redis_bed.wait_status(good) == {good[0].id: "completed"}
    assert f"run {planted.id}: " in refusals()[0]
    if where == "log/runner":
        assert redis_bed.executions(planted) == []
    assert run_status(planted) != "completed"
    assert worker.proc.poll() is None
    _untouched(target)


def test_walk_once_ends_quietly_when_a_close_fails(run, monkeypatch):
    """NFS reports some write errors only at close: the block's work stands, every fd is closed."""
    before = _open_fds()
    real_close = os.close
    closed = []

    def failing_close(fd):
        closed.append(fd)
        real_close(fd)
        raise OSError(5, "Input/output error")

    with walk_once():
        runner_log(run, "written")
        monkeypatch.setattr(os, "close", failing_close)
    monkeypatch.undo()
    assert len(closed) >= 3  # log/runner, log/, the meta dir, ...
    assert _open_fds() == before
    assert "written" in Path(run.meta_dir, "log", "runner").read_text()
