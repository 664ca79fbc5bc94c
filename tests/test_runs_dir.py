"""Finding runs in a runs dir: listing, lookup by id/prefix/name, strict ids."""

from __future__ import annotations

import os

import pytest

from gage_runs import (
    OpCmd,
    OpDef,
    OpRef,
    RunLookupError,
    RunsDirError,
    check_runs_dir,
    find_run,
    init_run_meta,
    list_runs,
    make_run,
    resolve_run_id,
    select_runs,
)


def new_run(runs_dir, run_id=None):
    run = make_run(OpRef("proj", "op"), str(runs_dir), id=run_id)
    init_run_meta(run, OpDef("op", {}), {}, OpCmd("true", {}))
    return run


def test_list_runs_newest_first_and_skips_non_runs(tmp_path):
    """Only `*.meta` dirs with a valid opref and hex id are runs."""
    first, second = new_run(tmp_path), new_run(tmp_path)
    (tmp_path / "emptylock.meta").mkdir()
    (tmp_path / "emptylock.meta" / "opref").write_text("1 proj op")
    (tmp_path / "junk.meta").mkdir()
    (tmp_path / "notes.txt").write_text("")
    assert [run.id for run in list_runs(str(tmp_path))] == [second.id, first.id]
    assert list_runs(str(tmp_path / "missing")) == []


def test_find_run_by_id_prefix_and_name(tmp_path):
    """A run is found by full id, id prefix, name or name prefix."""
    run = new_run(tmp_path, "abcd1234-0000-4000-8000-000000000000")
    new_run(tmp_path, "abce5678-0000-4000-8000-000000000000")
    assert find_run(str(tmp_path), run.id).id == run.id
    assert find_run(str(tmp_path), "abcd").id == run.id
    assert find_run(str(tmp_path), run.name).id == run.id
    assert find_run(str(tmp_path), run.name[:7]).id == run.id


def test_ambiguous_and_missing_specs_are_errors(tmp_path):
    """An ambiguous prefix lists the matches; no match says so."""
    a = new_run(tmp_path, "abcd1234-0000-4000-8000-000000000000")
    b = new_run(tmp_path, "abce5678-0000-4000-8000-000000000000")
    with pytest.raises(RunLookupError) as e:
        find_run(str(tmp_path), "abc")
    assert "matches 2 runs" in str(e.value)
    assert a.name in str(e.value) and b.name in str(e.value)
    with pytest.raises(RunLookupError, match="no run matches 'fff'"):
        find_run(str(tmp_path), "fff")


@pytest.mark.parametrize("bad", [
    "../../etc", "..", "", "abcd", "ABCD1234-0000-4000-8000-000000000000",
    "/etc/passwd", None, 42, ["x"], "abcd1234-0000-4000-8000-000000000000/../x",
])
def test_resolve_run_id_rejects_non_ids(tmp_path, bad):
    """Task messages carry ids; anything that is not a canonical id is rejected."""
    with pytest.raises(RunLookupError):
        resolve_run_id(str(tmp_path), bad)


def test_resolve_run_id_rejects_symlinks_out_of_the_runs_dir(tmp_path):
    """A meta dir that is a symlink to another runs dir is not ours."""
    other = tmp_path / "other"
    ours = tmp_path / "ours"
    ours.mkdir()
    run = new_run(other)
    os.symlink(run.meta_dir, ours / f"{run.id}.meta")
    with pytest.raises(RunLookupError, match="outside the runs dir"):
        resolve_run_id(str(ours), run.id)
    with pytest.raises(RunLookupError, match="no run"):
        resolve_run_id(str(ours), "abcd1234-0000-4000-8000-000000000000")
    assert resolve_run_id(str(other), run.id).id == run.id


def test_check_runs_dir(tmp_path):
    """A missing or unwritable runs dir is a clear error."""
    with pytest.raises(RunsDirError, match="does not exist"):
        check_runs_dir(str(tmp_path / "missing"))
    assert check_runs_dir(str(tmp_path)) == str(tmp_path)
    if os.geteuid() != 0:
        os.chmod(tmp_path, 0o555)
        with pytest.raises(RunsDirError, match="not writable"):
            check_runs_dir(str(tmp_path))


def test_select_runs_by_index_and_slice(tmp_path):
    """`1` is the newest run, `2:3` the next two; each run is named once."""
    oldest, middle, newest = (new_run(tmp_path) for _ in range(3))
    root = str(tmp_path)
    assert find_run(root, "1").id == newest.id
    assert [r.id for r in select_runs(root, ["2:3"])] == [middle.id, oldest.id]
    assert [r.id for r in select_runs(root, ["1", newest.id, ":1"])] == [newest.id]
    with pytest.raises(RunLookupError, match="names 2 runs"):
        find_run(root, "1:2")
    with pytest.raises(RunLookupError, match="no runs in '5:9'"):
        select_runs(root, ["5:9"])
