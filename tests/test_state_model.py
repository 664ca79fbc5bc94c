"""The one state model: its named sets, its one commit step, and that no other
module keeps a state model of its own (no status names compared or listed)."""

from __future__ import annotations

import ast
import pathlib

import pytest
from support.records import submitted

from gage_queue import states
from gage_queue.locks import read_record, try_lock
from gage_queue.states import (
    CANCELLABLE,
    ENDED,
    FAILED,
    FINISHED,
    INDEXED,
    LOCK_DECIDES,
    OWED,
    UNFINISHED,
    WAIT_DONE,
    WAITING_TO_START,
    EndReason,
    Event,
    IllegalTransition,
    RunState,
    exit_words,
)

S = RunState
ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_the_named_sets_say_what_they_mean():
    assert {S.COMPLETED, S.ERROR, S.TERMINATED} == ENDED
    assert ENDED | {S.FINALIZE_FAILED} == FINISHED
    assert FINISHED | {S.LOST} == WAIT_DONE
    assert {S.QUEUED, S.WAITING, S.RUNNING, S.LOST, S.FINALIZING} == OWED
    assert {S.QUEUED, S.WAITING} == states.NOT_STARTED <= WAITING_TO_START
    assert OWED | {S.FINALIZE_FAILED} == INDEXED
    assert WAITING_TO_START | {S.RUNNING} == CANCELLABLE
    assert not (OWED & FINISHED) and not (UNFINISHED & WAIT_DONE)
    assert S.COMPLETED not in FAILED and FAILED <= WAIT_DONE
    assert {S.RUNNING} == LOCK_DECIDES
    # Every state the queue owes something can be reached and left by the table
    # (waiting only at submit, lost only when a keeper dies: both are left).
    sources = {state for state, _ in states.TRANSITIONS}
    targets = set().union(*states.TRANSITIONS.values())
    assert OWED - {S.LOST, S.WAITING} <= sources & targets and {S.LOST, S.WAITING} <= sources


def test_end_words():
    assert states.cancelled_words("ann@laptop") == "cancelled by ann@laptop"
    assert states.cancelled_words(None) == "cancelled"
    assert states.before_start_words("cancelled") == "cancelled before it started"
    assert [exit_words(code) for code in (0, 3, -9, -200)] == [
        "completed", "exit 3", "killed by SIGKILL", "killed by signal 200"]
    assert states.lost_words(EndReason.WORKER_LOST, "h1") == "its keeper on h1 died"
    assert states.lost_words(EndReason.HOST_LOST, "h1") == "its host h1 was lost"


def test_advance_is_the_one_commit_step(worker_bed):
    """A move the table allows is committed; any other raises and writes nothing."""
    run = submitted(worker_bed.stage())
    lock = try_lock(run)
    assert lock is not None
    with lock:
        record = lock.advance(lock.record(), Event.START, S.RUNNING, host="h1")
        assert lock.record() == record and record.state is S.RUNNING
        with pytest.raises(IllegalTransition):
            lock.advance(record, Event.FINALIZE, S.COMPLETED)  # not from running
        with pytest.raises(IllegalTransition):
            lock.advance(record, Event.EXIT, S.COMPLETED)  # exit leads to finalizing only
        assert lock.record() == record
        # A lost run is committed running: recover moves it from lost.
        lost = lock.advance(record, Event.RECOVER, S.FINALIZING, current=S.LOST, exit_code=-9)
        assert lost.state is S.FINALIZING
    assert read_record(run).exit_code == -9


# ---------------------------------------------------------------------
# no other state model

STATE_NAMES = frozenset(state.value for state in RunState)
MODEL_AND_FORMAT = {
    "gage_queue/states.py",  # the model
    "gage_runs/status.py",  # Gage's own status derivation (run-format.md)
    "gage_runs/types.py",  # the format's RunStatus type
}


def _product_modules():
    for package in ("gage_runs", "gage_queue", "gage_worker", "gage_submit"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in MODEL_AND_FORMAT:
                yield rel, ast.parse(path.read_text(), rel)


def _names_in(node: ast.AST) -> list[str]:
    """State names in a string constant or a literal collection of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if node.value in STATE_NAMES else []
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        found = [name for element in node.elts for name in _names_in(element)]
        constants = [e for e in node.elts if isinstance(e, ast.Constant)]
        # a list of Gage's timestamp files names "staged" too: not a status list
        if any(isinstance(e.value, str) and e.value not in STATE_NAMES for e in constants):
            return []
        return found
    return []


def _status_literals(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            # `"staged" in files` asks for Gage's timestamp file: only a literal
            # container on the right of `in` lists states.
            membership = all(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)
            operands = node.comparators if membership else (node.left, *node.comparators)
            for operand in operands:
                if membership and isinstance(operand, ast.Constant):
                    continue
                found += [(node.lineno, name) for name in _names_in(operand)]
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(_names_in(node)) >= 2:
            found += [(node.lineno, ", ".join(_names_in(node)))]
        elif isinstance(node, ast.Dict):
            keys = [name for key in node.keys if key is not None for name in _names_in(key)]
            if len(keys) >= 2:
                found.append((node.lineno, ", ".join(keys)))
    return found


def test_no_module_compares_or_lists_status_names():
    """Statuses are compared and grouped only through `gage_queue.states`."""
    offenders = [f"{rel}:{line}: {names}" for rel, tree in _product_modules()
                 for line, names in _status_literals(tree)]
    assert offenders == []


def test_the_check_finds_what_it_looks_for():
    tree = ast.parse('if s == "running": pass\nACTIVE = ("queued", "running")\n'
                     'TIMES = ("initialized", "staged", "started")\n'
                     'COLOURS = {"completed": "green", "error": "red"}\n'
                     'if "staged" in names: pass\nif s in ("lost",): pass\n')
    assert _status_literals(tree) == [(1, "running"), (2, "queued, running"),
                                      (4, "completed, error"), (6, "lost")]
