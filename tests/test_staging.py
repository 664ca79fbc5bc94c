"""Staging runs: files log, manifest, hooks, config, failures, sidecars."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys

import pytest

from gage_runs import (
    OpDef,
    OpRef,
    RunExecError,
    exec_run,
    finalize_run,
    run_status,
    run_user_attrs,
    stage_op,
)
from gage_runs.files_log import RunManifest, iter_files_log


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def read(path) -> str:
    with open(path) as f:
        return f.read()


@pytest.fixture
def project(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "train.py").write_text("lr = 0.1\nprint(f'lr={lr}')\n")
    (proj / "data.csv").write_text("a,b\n")
    (proj / ".hidden").mkdir()
    (proj / ".hidden" / "x.py").write_text("")
    return proj


def stage(project, data, config=None, **kw):
    opdef = OpDef("train", {"exec": "python train.py", "config": "train.py", **data})
    return stage_op(str(project), opdef, OpRef("proj", "train"), config or {},
                    str(project.parent / "runs"), **kw)


def test_staged_run_files_log_and_manifest(project):
    """Source files are logged `a s <mtime> <path>`, sorted, and the manifest
    lists `s <sha256> <path>`; staged files are read-only."""
    run = stage(project, {})
    log = list(iter_files_log(run))
    assert [(e.event, e.type, e.path) for e in log] == [
        ("a", "s", "data.csv"), ("a", "s", "train.py"),
    ]
    assert all(e.modified and e.modified > 10**15 for e in log)
    entries = list(RunManifest(run))
    digest = hashlib.sha256(read(f"{run.run_dir}/train.py").encode()).hexdigest()
    assert [tuple(e) for e in entries][1] == ("s", digest, "train.py")
    assert mode(f"{run.run_dir}/train.py") == 0o444
    assert mode(f"{run.meta_dir}/manifest") == 0o666
    assert run_status(run) == "staged"


def test_config_patch_and_log_patched(project):
    """Config goes into the copied file; log/patched holds the diff."""
    run = stage(project, {}, {"lr": 0.01})
    assert read(f"{run.run_dir}/train.py").startswith("lr = 0.01\n")
    assert read(f"{run.meta_dir}/log/patched") == (
        "--- train.py\n+++ train.py\n@@ -1,2 +1,2 @@\n-lr = 0.1\n+lr = 0.01\n"
        " print(f'lr={lr}')\n"
    )
    assert mode(f"{run.meta_dir}/log/patched") == 0o444
    assert read(f"{project}/train.py").startswith("lr = 0.1\n"), "project untouched"


def test_hooks_log_runtime_and_dependency_files(project):
    """Files made by the runtime and dependencies hooks are typed r and d;
    hooks get lowercase run_id, run_dir and project_dir."""
    run = stage(project, {"exec": {
        "run": "python train.py",
        "stage-runtime": [sys.executable, "-c", "open('rt.txt', 'w').write('r')"],
        "stage-dependencies": "echo $project_dir > dep.txt",
    }})
    types = {e.path: e.type for e in iter_files_log(run)}
    assert types["rt.txt"] == "r" and types["dep.txt"] == "d"
    assert read(f"{run.run_dir}/dep.txt") == f"{project}\n"
    assert read(f"{run.meta_dir}/output/20_runtime") == ""
    assert [e.type for e in RunManifest(run)] == ["s", "s", "r", "d"]


def test_failed_hook_leaves_the_run_pending(project):
    """A failing staging hook raises RunExecError and leaves the run pending,
    never staged: it cannot be mistaken for a valid staged run."""
    with pytest.raises(RunExecError) as e:
        stage(project, {"exec": {"run": "python train.py", "stage-runtime": "exit 4"}})
    assert (e.value.phase_name, e.value.exit_code) == ("stage-runtime", 4)
    runs = project.parent / "runs"
    (meta,) = [p for p in runs.iterdir() if p.name.endswith(".meta")]
    assert not (meta / "staged").exists()
    assert (meta / "initialized").exists()


def test_generated_and_deleted_files_at_finalize(project):
    """At finalize, new files are `a g`, deleted staged files `d g -`, and a
    modified staged file is noted in the runner log."""
    run = stage(project, {"exec": (
        "python -c \"import os; os.remove('data.csv'); open('out.txt','w').write('o')\""
    )})
    os.chmod(f"{run.run_dir}/train.py", 0o644)
    with open(f"{run.run_dir}/train.py", "a") as f:
        f.write("# changed\n")
    exec_run(run)
    finalize_run(run)
    tail = [(e.event, e.type, e.path) for e in iter_files_log(run)][2:]
    assert ("a", "g", "out.txt") in tail and ("d", "g", "data.csv") in tail
    assert ("m", "g", "train.py") in tail
    assert [e.path for e in RunManifest(run)] == ["train.py", "out.txt"]
    assert 'File "train.py" was modified during the run' in read(f"{run.meta_dir}/log/runner")
    assert "d g - data.csv\n" in read(f"{run.meta_dir}/log/files")


def test_project_sidecar_and_label(project):
    """`<id>.project` points back at the project; a label is a user attribute."""
    run = stage(project, {}, label="first try")
    assert read(run.run_dir + ".project") == "file:" + str(project)
    assert run_user_attrs(run) == {"label": "first try"}
    (entry,) = os.listdir(run.run_dir + ".user")
    data = json.loads(read(f"{run.run_dir}.user/{entry}"))
    assert data["set"] == {"label": "first try"} and data["delete"] == []


def test_runs_dir_inside_the_project_is_not_copied(project):
    """A runs dir inside the project (`$runs-dir = "runs"`) is never staged."""
    opdef = OpDef("train", {"exec": "python train.py", "sourcecode": ["**/*"]})
    runs = project / "runs"
    first = stage_op(str(project), opdef, OpRef("proj", "train"), {}, str(runs))
    second = stage_op(str(project), opdef, OpRef("proj", "train"), {}, str(runs))
    assert sorted(os.listdir(second.run_dir)) == sorted(os.listdir(first.run_dir))
    assert "runs" not in os.listdir(second.run_dir)
    assert read(second.run_dir + ".project") == "file:.."


def test_platform_attribute_is_pythons_platform_string(project):
    """`sys/platform.json` holds what `platform.platform()` returns, as Gage writes it,
    though staging builds it without the `uname -p` that call runs."""
    import platform

    run = stage(project, {})
    with open(f"{run.meta_dir}/sys/platform.json") as f:
        assert json.load(f) == platform.platform()
