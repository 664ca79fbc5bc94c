"""What `gage-submit` stages and sends, on the embedded broker with no worker running.

The embedded broker keeps each task message as a file in the runs dir, so
these tests see exactly what a worker would receive: one `gage.exec`
message per run, carrying only the run id.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from support.submit_cli import GageSubmit, assert_one_line_error, run_line_fields, write_project

from gage_queue.queue_meta import read_submitted
from gage_queue.snapshots import run_state
from gage_runs.meta import meta_config
from gage_runs.runs_dir import list_runs
from gage_runs.sidecars import run_user_attrs
from gage_runs.status import run_status


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj")


@pytest.fixture
def gage_submit(project: Path) -> GageSubmit:
    return GageSubmit(project, {})


def sent_messages(runs_dir: Path) -> dict[str, dict]:
    """The embedded broker's waiting messages: run id -> {task, queue}."""
    found = {}
    for path in (runs_dir / ".gage-queue" / "broker" / "messages").glob("*.msg"):
        message = json.loads(path.read_text())
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        queue = path.name.split(".", 1)[1].removesuffix(".msg")
        found[args[0]] = {"task": message["headers"]["task"], "queue": queue, "args": args}
    return found


def test_submit_stages_a_gage_run_and_queues_it(gage_submit, project):
    """`gage-submit train lr=0.01` stages like `gage run --stage` and sends the run id."""
    result = gage_submit("train", "lr=0.01", check=True)

    status, name, run_id, detail = run_line_fields(result.out)
    assert (status, detail) == ("queued", "lr=0.01")
    runs_dir = project / ".gage" / "runs"  # Gage's default runs dir
    (run,) = list_runs(str(runs_dir))
    assert (run.id, run.name) == (run_id, name)
    assert run_status(run) == "staged"
    assert run_state(run) == "queued"
    # config.json: the project's values overlaid by the flag; the staged copy is patched.
    assert meta_config(run) == {"lr": 0.01, "batch": 32, "optimizer": "adam"}
    assert "lr = 0.01\n" in (Path(run.run_dir) / "train.py").read_text()
    assert (Path(run.run_dir + ".project")).read_text() == "file:../.."
    assert sent_messages(runs_dir) == {
        run.id: {"task": "gage.exec", "queue": "gage", "args": [run.id]}
    }
    assert (Path(run.meta_dir) / "queue" / "enqueued").exists()
    assert result.err == ""


def test_label_queue_and_time_limit_are_recorded(gage_submit, project):
    """The label is a Gage user attribute; queue and time limit go to queue/submitted."""
    gage_submit("slow", "-l", "first try", "-q", "cpu", "--time-limit", "1h30m", check=True)

    (run,) = list_runs(str(project / ".gage" / "runs"))
    assert run_user_attrs(run) == {"label": "first try"}
    (entry,) = Path(run.run_dir + ".user").iterdir()
    assert json.loads(entry.read_text())["set"] == {"label": "first try"}
    submitted = read_submitted(run)
    assert (submitted["queue"], submitted["time_limit"]) == ("cpu", 5400)
    assert sent_messages(project / ".gage" / "runs")[run.id]["queue"] == "cpu"


def test_grid_submits_one_run_per_combination(gage_submit, project):
    """Two list flags of two values make four runs, each with its own config and message."""
    result = gage_submit("train", "lr=[0.1,0.01]", "batch=[16,32]", "--json", check=True)

    submitted = result.json()
    assert [(r["config"]["lr"], r["config"]["batch"]) for r in submitted] == [
        (0.1, 16), (0.1, 32), (0.01, 16), (0.01, 32)
    ]
    assert {r["status"] for r in submitted} == {"queued"}
    assert {r["queue"] for r in submitted} == {"gage"}
    runs_dir = project / ".gage" / "runs"
    assert sorted(sent_messages(runs_dir)) == sorted(r["id"] for r in submitted)
    for r in submitted:
        staged = (Path(r["run_dir"]) / "train.py").read_text()
        assert f"lr = {r['config']['lr']}\n" in staged
        assert f"batch = {r['config']['batch']}\n" in staged


def test_big_grid_is_staged_completely_and_in_order(gage_submit, project):
    """A 60-run grid (staged by a process pool) yields every run once, in grid order."""
    lrs = [str(i / 100) for i in range(1, 21)]
    result = gage_submit("train", f"lr=[{','.join(lrs)}]", "optimizer=[adam,sgd,rms]", check=True)

    lines = [run_line_fields(line) for line in result.lines()]
    assert len(lines) == 60
    expected = [f"lr={lr} optimizer={o}" for lr in lrs for o in ("adam", "sgd", "rms")]
    assert [detail for _, _, _, detail in lines] == expected
    runs = {run.id: run for run in list_runs(str(project / ".gage" / "runs"))}
    assert sorted(runs) == sorted(run_id for _, _, run_id, _ in lines)
    assert sorted(sent_messages(project / ".gage" / "runs")) == sorted(runs)
    assert {run_state(run) for run in runs.values()} == {"queued"}


def test_the_default_op_and_a_flag_first(gage_submit, project):
    """With no op, or a flag where the op would be, the default op runs, as in Gage."""
    gage_submit("lr=0.5", check=True)
    gage_submit(check=False)  # a bare command shows help
    gage_submit("submit", check=True)
    ops = sorted(run.opref.op_name for run in list_runs(str(project / ".gage" / "runs")))
    assert ops == ["train", "train"]


def test_an_op_named_like_a_command_with_submit(gage_submit, project):
    """`gage-submit submit list` submits an op called `list`."""
    (project / "gage.toml").write_text('[list]\nexec = "python train.py"\nconfig = "train.py"\n')
    gage_submit("submit", "list", "batch=8", check=True)
    (run,) = list_runs(str(project / ".gage" / "runs"))
    assert (run.opref.op_name, meta_config(run)["batch"]) == ("list", 8)


def test_project_found_from_a_subdir_and_with_C(gage_submit, project, tmp_path):
    """The nearest project dir from the cwd up is used; `-C` starts the search elsewhere."""
    (project / "src").mkdir()
    GageSubmit(project / "src", {})("train", check=True)
    GageSubmit(tmp_path, {})("train", "-C", str(project / "src"), check=True)
    runs = list_runs(str(project / ".gage" / "runs"))
    assert len(runs) == 2
    assert {run.opref.op_ns for run in runs} == {"proj"}


def test_runs_dir_resolution_order(project, tmp_path):
    """`--runs-dir` beats GAGE_RUNS, which beats RUNS_DIR, which beats `$runs-dir`."""
    for name in ("flag", "gage-runs", "runs-dir"):
        (tmp_path / name).mkdir()
    text = (project / "gage.toml").read_text()
    (project / "gage.toml").write_text('"$runs-dir" = "myruns"\n\n' + text)

    GageSubmit(project, {})("train", check=True)
    GageSubmit(project, {"RUNS_DIR": str(tmp_path / "runs-dir")})("train", check=True)
    env = {"RUNS_DIR": str(tmp_path / "runs-dir"), "GAGE_RUNS": str(tmp_path / "gage-runs")}
    GageSubmit(project, env)("train", check=True)
    GageSubmit(project, env)("train", "--runs-dir", str(tmp_path / "flag"), check=True)

    for where in (project / "myruns", *(tmp_path / n for n in ("runs-dir", "gage-runs", "flag"))):
        assert len(list_runs(str(where))) == 1, where
        assert len(sent_messages(where)) == 1, where
    assert not (project / ".gage").exists()


def test_broker_down_leaves_the_run_queued_for_reconcile(gage_submit, project):
    """With the broker unreachable the run stays staged and queued; the error says so."""
    result = gage_submit("train", "lr=0.2", "--broker", "redis://127.0.0.1:9/0")

    line = assert_one_line_error(result, code=3)
    runs_dir = project / ".gage" / "runs"
    assert "cannot reach the broker at redis://127.0.0.1:9/0" in line
    assert f"1 of 1 runs stay queued in {runs_dir}" in line
    assert "reconcile sends them when the broker is back" in line
    (run,) = list_runs(str(runs_dir))
    assert run_line_fields(result.out)[2] == run.id
    assert run_state(run) == "queued"
    assert meta_config(run)["lr"] == 0.2
    assert not (Path(run.meta_dir) / "queue" / "enqueued").exists()


@pytest.mark.parametrize("runs", [3, 60], ids=["one process", "process pool"])
def test_broker_down_leaves_a_grid_queued_for_reconcile(gage_submit, project, redis_server, runs):
    """Every run of a grid is staged and recorded as queued; none is sent; exit 3."""
    redis_server.stop()  # a real broker, down
    lrs = ",".join(str(i / 100) for i in range(1, runs // 3 + 1))
    result = gage_submit(
        "train", f"lr=[{lrs}]", "optimizer=[adam,sgd,rms]", "--broker", redis_server.url
    )

    runs_dir = project / ".gage" / "runs"
    line = assert_one_line_error(result, code=3)
    assert f"cannot reach the broker at {redis_server.url}: " in line
    assert (
        f"; {runs} of {runs} runs stay queued in {runs_dir} and reconcile sends them when the"
        " broker is back (any worker on start, or `gage-worker reconcile`)"
    ) in line
    assert len(result.lines()) == runs
    listed = list_runs(str(runs_dir))
    assert len(listed) == runs
    assert {run_state(run) for run in listed} == {"queued"}
    assert not any((Path(run.meta_dir) / "queue" / "enqueued").exists() for run in listed)


def test_real_gage_shows_a_submitted_run(gage_submit, project, real_gage):
    """Real gage 0.1.2 lists a gage-submit run as staged, with its label and config."""
    result = gage_submit("train", "lr=0.03", "-l", "from gage-submit", check=True)
    _, name, _, _ = run_line_fields(result.out)
    runs_dir = project / ".gage" / "runs"

    listed = real_gage("runs", runs_dir=runs_dir, project=project).stdout
    assert name[:5] in listed and "staged" in listed and "from gage-submit" in listed
    shown = real_gage("show", name, runs_dir=runs_dir, project=project).stdout
    assert "0.03" in shown
