"""Bad input to `gage-submit`: one line on stderr, exit 2, and nothing written anywhere.

Every case runs the real command in a fresh project whose runs dir is
inside the project (`.gage/runs`, Gage's default), then checks that no
file appeared: all input is checked before the first run is staged.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.submit_cli import GageSubmit, assert_one_line_error, write_project


def snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj")


@pytest.fixture
def gage_submit(project: Path) -> GageSubmit:
    return GageSubmit(project, {})


def submit_fails(gage_submit: GageSubmit, project: Path, *args: str, code: int = 2) -> str:
    """Run a submit that must fail; its error line. Asserts nothing was written."""
    before = snapshot(project.parent)
    result = gage_submit(*args)
    line = assert_one_line_error(result, code=code)
    assert result.out == ""
    assert snapshot(project.parent) == before
    return line


def test_malformed_toml_names_the_file_and_line(gage_submit, project):
    """A TOML syntax error gives the Gage file and the line."""
    (project / "gage.toml").write_text('[train]\nexec = "python train.py\n')
    line = submit_fails(gage_submit, project, "train")
    assert line.startswith("gage-submit: error: gage.toml: invalid TOML at line 2")


def test_unknown_op_key_names_the_file_op_and_key(gage_submit, project):
    """Validation against Gage's op schema names the file, the op and the bad key."""
    (project / "gage.toml").write_text('[train]\nexec = "python train.py"\nconfg = "train.py"\n')
    line = submit_fails(gage_submit, project, "train")
    assert line == (
        "gage-submit: error: gage.toml: op 'train': unknown key 'confg' (did you mean 'config'?)"
    )


def test_wrong_type_in_op_names_the_key(gage_submit, project):
    """A key of the wrong type is reported with what was expected."""
    (project / "gage.toml").write_text("[train]\nexec = 12\n")
    line = submit_fails(gage_submit, project, "train")
    assert "gage.toml: op 'train': 'exec' must be" in line
    assert line.endswith("got a number")


def test_gage_file_under_dot_gage_is_found_and_checked(gage_submit, project):
    """`.gage/gage.yaml` comes before `gage.toml`, as in Gage; its errors name it."""
    (project / ".gage").mkdir()
    (project / ".gage" / "gage.yaml").write_text("train:\n  exec: [python\n")
    line = submit_fails(gage_submit, project, "train")
    assert f"{os.path.join('.gage', 'gage.yaml')}: invalid YAML" in line


def test_no_gage_file(gage_submit, project):
    """A project without a Gage file says where it looked."""
    (project / "gage.toml").unlink()
    (project / ".git").mkdir()  # a project marker, so the project dir is this one
    line = submit_fails(gage_submit, project, "train")
    assert f"no Gage file in {project}" in line
    assert "gage.toml" in line


def test_unknown_op_lists_the_ops(gage_submit, project):
    """An op the Gage file lacks is an error listing the ops it has."""
    line = submit_fails(gage_submit, project, "trian")
    assert line == (
        "gage-submit: error: gage.toml has no operation 'trian' (did you mean 'train'?)"
        " (available: fail, slow, train)"
    )


def test_unknown_flag_lists_the_valid_ones(gage_submit, project):
    """A flag name not in the op's config is refused with every valid name."""
    line = submit_fails(gage_submit, project, "train", "lr=0.01", "epochs=3")
    assert line == (
        "gage-submit: error: unknown flag 'epochs' for operation 'train';"
        " valid flags: batch, lr, optimizer"
    )


@pytest.mark.parametrize(
    ("flag", "fragment"),
    [
        ("lr=fast", "invalid value for flag 'lr': expected a number (currently 0.1), got 'fast'"),
        ("lr=[0.1,oops]", "got 'oops'"),
        ("lr='0.1'x", "invalid flag \"lr='0.1'x\": unexpected 'x' after the closing quote"),
        ("lr", "invalid flag 'lr': expected NAME=VALUE"),
        ("lr=[1,,2]", "item 2 is empty"),
    ],
)
def test_bad_values(gage_submit, project, flag, fragment):
    """Values Gage can't parse, or that can't replace the project's value, are refused."""
    line = submit_fails(gage_submit, project, "train", flag)
    assert fragment in line


def test_grid_over_max_runs(gage_submit, project):
    """A grid bigger than --max-runs (default 100) tells the user how to raise it."""
    lrs = ",".join(str(i / 100) for i in range(1, 12))
    batches = ",".join(str(b) for b in range(1, 11))
    line = submit_fails(gage_submit, project, "train", f"lr=[{lrs}]", f"batch=[{batches}]")
    assert line.endswith("the flags make 110 runs, more than the limit of 100: pass --max-runs 110 to submit them")
    line = submit_fails(gage_submit, project, "train", "lr=[1,2,3]", "--max-runs", "2")
    assert "pass --max-runs 3" in line


def test_missing_runs_dir(gage_submit, project, tmp_path):
    """A runs dir outside the project must exist (an unmounted share is not created locally)."""
    missing = tmp_path / "share" / "runs"
    line = submit_fails(gage_submit, project, "train", "--runs-dir", str(missing))
    assert f"runs dir {missing} does not exist" in line
    by_env = GageSubmit(project, {"GAGE_RUNS": str(missing)})
    assert f"runs dir {missing} does not exist" in submit_fails(by_env, project, "train")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--time-limit", "soon"), "invalid duration 'soon'"),
        (("--time-limit", "0"), "must be more than zero"),
        (("-q", "gpu queue"), "invalid queue name 'gpu queue'"),
        (("--broker", "http://localhost"), "invalid broker URL 'http://localhost'"),
        (("--max-runs", "0"), "Invalid value for '--max-runs'"),
        (("--follow", "--json"), "--follow streams output"),
        (("lr=[0.1,0.2]", "--follow"), "--follow takes a single run and the flags make 2"),
        (("--no-such-option",), "--no-such-option"),
    ],
)
def test_bad_options(gage_submit, project, args, fragment):
    """Bad options are one-line usage errors too."""
    assert fragment in submit_fails(gage_submit, project, "train", *args)


def test_bad_setting_in_the_environment(project):
    """A bad GAGE_* setting is reported like bad input, not as a traceback."""
    result = GageSubmit(project, {"GAGE_QUEUE": "no spaces please"})("train")
    assert_one_line_error(result, "invalid queue name 'no spaces please'")


def test_run_lookup_errors(project, tmp_path):
    """Unknown runs and bad specs are one-line errors for every run command."""
    gage_submit = GageSubmit(project, {"GAGE_RUNS": str(tmp_path / "runs")})
    assert_one_line_error(gage_submit("show", "abc"), f"no run matches 'abc' in {tmp_path / 'runs'}")
    assert_one_line_error(gage_submit("logs", "1"), "no run matches '1'")
    assert_one_line_error(gage_submit("wait", "5:9"), "no runs in '5:9'")
    assert_one_line_error(gage_submit("cancel", "zzz"), "no run matches 'zzz'")
    assert_one_line_error(gage_submit("wait"), "Missing argument 'RUN...'")
    assert_one_line_error(gage_submit("list", "--status", "done"), "'done' is not one of")
    assert_one_line_error(gage_submit("wait", "1", "--timeout", "x"), "invalid duration 'x'")
    assert_one_line_error(gage_submit("rerun", "1", "--follow", "--json"),
                          "--follow streams output; it cannot be used with --json")


def test_a_failing_stage_hook_leaves_the_run_pending_and_unqueued(gage_submit, project):
    """A stage hook that fails is exit 1; the run stays pending, as Gage leaves it, and unsent."""
    (project / "gage.toml").write_text(
        '[prep]\nexec = { run = "python train.py", stage-runtime = "echo preparing; exit 2" }\n'
    )
    result = gage_submit("prep")

    runs_dir = project / ".gage" / "runs"
    line = assert_one_line_error(result, code=1)
    assert line == (
        "gage-submit: error: staging a run of prep failed: stage-runtime failed with exit code 2"
        f" (the run stays pending in {runs_dir}; nothing was queued for it)"
    )
    (meta,) = runs_dir.glob("*.meta")
    assert not (meta / "queue").exists()
    listed = GageSubmit(project, {})("list", "--json", check=True).json()
    assert [r["status"] for r in listed] == ["pending"]
