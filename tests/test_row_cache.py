"""`list`'s row cache: a long listing reads ended runs from one file, and never shows a stale row.

Runs are made with the real helpers and records; every listing is
compared with one made with the cache off (`GAGE_LIST_CACHE=off`).
Rows are kept only for runs whose meta dir settled (2 s), so the tests
date the runs' files back, as on a runs dir that grew over time.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from support.records import commit, submitted

from gage_queue.states import EndReason, RunState
from gage_runs.meta import init_run_meta, make_run, write_timestamp
from gage_runs.sidecars import log_user_attrs
from gage_runs.types import OpCmd, OpDef, OpRef, Run
from gage_submit import info as info_module
from gage_submit import row_cache
from gage_submit.filters import RunFilter
from gage_submit.listing import list_rows

OPDEF = OpDef("train", {"exec": "python train.py"})
RUNS = 120  # above row_cache.WORTH_IT: `list -a` uses the cache


def _run(runs_dir: Path, op: str = "train") -> Run:
    run = make_run(OpRef("proj", op), str(runs_dir))
    init_run_meta(run, OPDEF, {}, OpCmd("python train.py", {}))
    write_timestamp(run, "staged")
    return run


def _ended(runs_dir: Path, i: int) -> Run:
    """Ended runs of the queue and of Gage: completed, error, terminated."""
    run = _run(runs_dir, "train" if i % 2 else "eval")
    write_timestamp(run, "started")
    kind = i % 3
    if i % 2:  # the queue's
        submitted(run)
        state, code, reason = [(RunState.COMPLETED, 0, EndReason.COMPLETED),
                               (RunState.ERROR, 3, EndReason.FAILED),
                               (RunState.TERMINATED, -15, EndReason.CANCELLED)][kind]
        commit(run, state=state, exit_code=code, reason=reason, host="gpu-1", node="w@gpu-1",
               started=1_700_000_000_000_000, ended=1_700_000_030_000_000)
    else:  # Gage's own
        _write(run, ("proc", "exit"), str([0, 1, -9][kind]))
    write_timestamp(run, "stopped")
    return run


def _write(run: Run, parts: tuple[str, ...], text: str) -> None:
    with open(os.path.join(run.meta_dir, *parts), "w") as f:
        f.write(text)


def _settle(runs_dir: Path, seconds: float = 60) -> None:
    """Date every file and dir of the runs dir back by `seconds`."""
    then = time.time() - seconds
    for path in [runs_dir, *runs_dir.rglob("*")]:
        os.utime(path, (then, then), follow_symlinks=False)


@dataclass
class Bed:
    runs_dir: Path
    queued: Run  # not ended: never kept


@pytest.fixture
def bed(tmp_path, monkeypatch) -> Bed:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "runs"
    root.mkdir()
    for i in range(RUNS):
        _ended(root, i)
    queued = submitted(_run(root))
    _settle(root)
    return Bed(root, queued)


def _listing(runs_dir: Path, where: RunFilter | None = None) -> list[dict]:
    rows, _ = list_rows(str(runs_dir), where or RunFilter(), limit=None, namespace="proj",
                        detail=False)
    return [{"index": index, **asdict(info)} for index, info in rows]


def _uncached(runs_dir: Path, monkeypatch, where: RunFilter | None = None) -> list[dict]:
    with monkeypatch.context() as m:
        m.setenv("GAGE_LIST_CACHE", "off")
        return _listing(runs_dir, where)


def _cache_file(runs_dir: Path) -> Path:
    path = row_cache._cache_path(str(runs_dir))
    assert path is not None
    return Path(path)


def _kept_ids(runs_dir: Path) -> set[str]:
    return set(json.loads(_cache_file(runs_dir).read_text())["rows"])


def _count_reads(monkeypatch) -> list[str]:
    """The runs `run_info` reads (from now on in this test)."""
    read: list[str] = []
    real = info_module.run_info

    def counting(run, **kwargs):
        read.append(run.id)
        return real(run, **kwargs)

    monkeypatch.setattr("gage_submit.listing.run_info", counting)
    return read


def test_a_listing_from_the_cache_is_the_listing_from_the_runs(bed, monkeypatch):
    runs_dir, queued = bed.runs_dir, bed.queued
    expected = _uncached(runs_dir, monkeypatch)
    assert not _cache_file(runs_dir).exists()
    assert _listing(runs_dir) == expected  # cold: reads every run, keeps the ended ones
    kept = _kept_ids(runs_dir)
    assert len(kept) == RUNS and queued.id not in kept

    read = _count_reads(monkeypatch)
    assert _listing(runs_dir) == expected  # warm: the same rows ...
    assert read == [queued.id]  # ... reading only the run that has not ended
    for where in (RunFilter(ops=("eval",)), RunFilter(statuses=("error", "terminated")),
                  RunFilter(ops=("proj:train",), statuses=("completed",))):
        assert _listing(runs_dir, where) == _uncached(runs_dir, monkeypatch, where)


def test_a_short_listing_does_not_use_the_cache(bed):
    runs_dir = bed.runs_dir
    rows, _ = list_rows(str(runs_dir), RunFilter(), limit=20, namespace=None, detail=False)
    assert len(rows) == 20
    assert not _cache_file(runs_dir).exists()


def test_a_label_set_after_a_row_was_kept_shows(bed, monkeypatch):
    runs_dir, queued = bed.runs_dir, bed.queued
    _listing(runs_dir)
    run = next(r for r in _runs(runs_dir) if r.id != queued.id)
    log_user_attrs(run, {"label": "first"})  # makes <id>.user/
    assert _label(runs_dir, run) == "first"
    _settle(runs_dir)
    _listing(runs_dir)  # kept again, with the label dir's mtime
    assert run.id in _kept_ids(runs_dir)
    log_user_attrs(run, {"label": "second"})  # a new entry in <id>.user/
    assert _label(runs_dir, run) == "second"
    assert _listing(runs_dir) == _uncached(runs_dir, monkeypatch)


def test_a_changed_meta_dir_or_sort_stamp_is_read_again(bed, monkeypatch):
    runs_dir, queued = bed.runs_dir, bed.queued
    _listing(runs_dir)
    first, second = [r for r in _runs(runs_dir) if r.id != queued.id][:2]
    _write(first, ("summary.json.tmp",), json.dumps({"run": {"label": "from summary"}}))
    os.replace(os.path.join(first.meta_dir, "summary.json.tmp"),
               os.path.join(first.meta_dir, "summary.json"))  # as finalize writes it
    then = time.time() - 30
    os.utime(os.path.join(second.meta_dir, "started"), (then, then))  # a restaged run
    read = _count_reads(monkeypatch)
    listing = _listing(runs_dir)
    assert {first.id, second.id} <= set(read)
    assert listing == _uncached(runs_dir, monkeypatch)
    assert next(r for r in listing if r["id"] == first.id)["label"] == "from summary"


def test_a_run_that_just_changed_is_not_kept(bed):
    runs_dir = bed.runs_dir
    run = _ended(runs_dir, 1)  # its meta dir changed just now
    _listing(runs_dir)
    assert run.id not in _kept_ids(runs_dir)
    assert len(_kept_ids(runs_dir)) == RUNS


def test_rows_of_deleted_runs_leave_the_cache(bed):
    runs_dir, queued = bed.runs_dir, bed.queued
    _listing(runs_dir)
    run = next(r for r in _runs(runs_dir) if r.id != queued.id)
    shutil.rmtree(run.meta_dir)
    shutil.rmtree(run.run_dir, ignore_errors=True)
    assert run.id not in {row["id"] for row in _listing(runs_dir)}
    assert run.id not in _kept_ids(runs_dir)


def test_a_damaged_cache_is_ignored_and_replaced(bed, monkeypatch):
    runs_dir, queued = bed.runs_dir, bed.queued
    expected = _uncached(runs_dir, monkeypatch)
    _listing(runs_dir)
    cache = _cache_file(runs_dir)
    for damage in (b"\x00garbage{", b'{"version": 1, "rows": []}', b"[]",
                   json.dumps({"version": 1, "rows": {queued.id: [1, 2]}}).encode()):
        cache.write_bytes(damage)
        assert _listing(runs_dir) == expected
    cache.write_text(json.dumps({"version": 1, "rows": {
        r: [0, 0, 0, "proj", "train", ["x"] * 3] for r in _kept_ids_of(runs_dir, queued)}}))
    assert _listing(runs_dir) == expected  # rows that do not fit are read again
    assert len(_kept_ids(runs_dir)) == RUNS


def test_the_cache_is_private_and_can_be_turned_off(bed, monkeypatch):
    runs_dir = bed.runs_dir
    _listing(runs_dir)
    cache = _cache_file(runs_dir)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    cache.unlink()
    monkeypatch.setenv("GAGE_LIST_CACHE", "off")
    _listing(runs_dir)
    assert not cache.exists()


def test_list_a_prints_the_same_table_with_and_without_the_cache(bed):
    runs_dir = bed.runs_dir
    env = {**os.environ, "COLUMNS": "200", "GAGE_RUNS": str(runs_dir)}
    command = [str(Path(sys.executable).parent / "gage-submit"), "list", "-a"]
    off = subprocess.run(command, env={**env, "GAGE_LIST_CACHE": "off"},
                         capture_output=True, text=True, check=True).stdout
    for _ in range(2):  # cold, then warm
        shown = subprocess.run(command, env=env, capture_output=True, text=True,
                               check=True).stdout
        assert shown == off
    assert len(off.splitlines()) == RUNS + 2  # the header and every run
    assert len(_kept_ids(runs_dir)) == RUNS


def _runs(runs_dir: Path) -> list[Run]:
    from gage_runs.runs_dir import list_runs

    return list_runs(str(runs_dir))


def _label(runs_dir: Path, run: Run) -> str | None:
    return next(row["label"] for row in _listing(runs_dir) if row["id"] == run.id)


def _kept_ids_of(runs_dir: Path, queued: Run) -> set[str]:
    return {r.id for r in _runs(runs_dir) if r.id != queued.id}
