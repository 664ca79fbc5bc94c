"""`gage-worker beat`: schedule files, cron times, and real beats submitting to real workers.

Beats run as `gage-worker beat` subprocesses next to the `gage-worker`
processes and redis-server of `support.workers`; the unit tests at the
end cover cron expressions, triggers and durations.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from support.submit_cli import GageSubmit
from support.workers import Bed, wait_for, worker_command

from gage_queue.locks import probe_path
from gage_queue.queue_meta import read_submitted
from gage_queue.snapshots import run_state
from gage_runs.meta import meta_timestamp
from gage_runs.runs_dir import list_runs
from gage_runs.types import Run
from gage_worker.beat.cron import CronError, parse_cron
from gage_worker.beat.loop import BeatLock
from gage_worker.beat.schedule import (
    CATCH_UP,
    CronTrigger,
    Every,
    ScheduleError,
    load_schedule,
    parse_duration,
)

REPO = Path(__file__).resolve().parent.parent
HELLO = REPO / "examples" / "hello"

NAP_GAGE_TOML = """\
[nap]
exec = "python nap.py"
config = "nap.py"
"""

NAP_PY = """\
import time

seconds = 0.0
time.sleep(seconds)
print("slept", seconds)
"""


class BeatProc:
    """A `gage-worker beat` process; its output (stdout and stderr) goes to a log file."""

    def __init__(self, bed: Bed, schedule: Path, *args: str, name: str = "beat"):
        self.log_path = bed.root / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*worker_command(), "beat", "--schedule", str(schedule), *args],
                env=bed.worker_env(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self, text: str) -> list[str]:
        return [line for line in self.log().splitlines() if text in line]

    def stop(self) -> int:
        """SIGTERM, and the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(15)


@pytest.fixture
def start_beat() -> Iterator:
    """Start beats on a bed; kill what is left of them at teardown."""
    beats: list[BeatProc] = []

    def start(bed: Bed, schedule: Path, *args: str, name: str = "beat") -> BeatProc:
        beat = BeatProc(bed, schedule, *args, name=name)
        beats.append(beat)
        return beat

    yield start
    for beat in beats:
        if beat.proc.poll() is None:
            beat.proc.kill()
            beat.proc.wait(10)


def nap_project(bed: Bed) -> Path:
    """A project whose op `nap` sleeps `seconds` (a flag)."""
    project = bed.root / "nap"
    project.mkdir(exist_ok=True)
    (project / "gage.toml").write_text(NAP_GAGE_TOML)
    (project / "nap.py").write_text(NAP_PY)
    return project


def write_schedule(bed: Bed, text: str, name: str = "schedule.toml") -> Path:
    path = bed.root / name
    path.write_text(text)
    return path


def job_runs(bed: Bed, job: str) -> list[Run]:
    """The runs marked with `job` in queue/submitted, oldest first."""
    runs = list_runs(str(bed.runs_dir))
    return sorted(
        (run for run in runs if (read_submitted(run) or {}).get("schedule") == job),
        key=submit_time,
    )


def submit_time(run: Run) -> float:
    return read_submitted(run)["time"] / 1e6


# ---------------------------------------------------------------------
# Real beats


@pytest.mark.system
def test_every_second_runs_complete_marked_with_the_job(redis_bed, start_beat):
    """Each tick stages and queues a run of the example project; a worker completes them all.

    The runs carry the job's name in queue/submitted, which is what
    `gage-submit list --schedule NAME` filters on.
    """
    redis_bed.start_worker("-c", "2")
    schedule = write_schedule(redis_bed, f"""\
[[job]]
name = "hello-every"
project = "{HELLO}"
op = "train"
flags = {{ epochs = 1, pause = 0, lr = "0.5" }}
every = "1s"
""")
    beat = start_beat(redis_bed, schedule)
    wait_for(lambda: len(beat.lines("submitted run")) >= 3, 20, "three submitted ticks")
    assert beat.stop() == 0

    runs = job_runs(redis_bed, "hello-every")
    assert set(redis_bed.wait_status(runs).values()) == {"completed"}
    submitted = beat.lines("hello-every: submitted run")
    assert [line.split("submitted run ")[1][:8] for line in submitted] == [r.id[:8] for r in runs]
    config = json.loads((Path(runs[0].meta_dir) / "config.json").read_text())
    assert (config["epochs"], config["lr"]) == (1, 0.5)

    gage_submit = GageSubmit(redis_bed.root, {"GAGE_RUNS": str(redis_bed.runs_dir)})
    listed = gage_submit("list", "--schedule", "hello-every", "--json", check=True).json()
    assert sorted(row["id"] for row in listed) == sorted(r.id for r in runs)


@pytest.mark.system
def test_tick_is_skipped_while_the_last_run_is_active(redis_bed, start_beat):
    """With overlap off (the default), ticks that find the last run queued or running are skipped.

    Runs sleep 2.5 s and ticks come every second, on a worker with two
    slots: runs still never overlap, and the skipped ticks say why.
    """
    redis_bed.start_worker("-c", "2")
    nap_project(redis_bed)
    schedule = write_schedule(redis_bed, """\
[[job]]
name = "naps"
project = "nap"
op = "nap"
flags = { seconds = 2.5 }
every = "1s"
""")
    beat = start_beat(redis_bed, schedule)
    wait_for(lambda: len(beat.lines("naps: submitted run")) >= 2, 30, "two submitted ticks")
    assert beat.stop() == 0

    runs = job_runs(redis_bed, "naps")
    assert set(redis_bed.wait_status(runs).values()) == {"completed"}
    skipped = beat.lines("naps: skipped: its last run")
    assert len(skipped) >= 2
    assert any(" is running; next tick at " in line for line in skipped)
    spans = [(meta_timestamp(run, "started"), meta_timestamp(run, "stopped")) for run in runs]
    for (_, stopped), (started, _) in zip(spans, spans[1:], strict=False):
        assert started > stopped, "a run started before the previous one stopped"


@pytest.mark.system
def test_two_beats_submit_each_tick_once(worker_bed, start_beat):
    """A second beat on the same schedule waits, and takes over when the first stops.

    With overlap allowed and no worker, every tick makes a run: runs are
    about a second apart (never two per tick), and each was logged by
    exactly one beat.
    """
    nap_project(worker_bed)
    schedule = write_schedule(worker_bed, """\
[[job]]
name = "ticks"
project = "nap"
op = "nap"
every = "1s"
overlap = true
""")
    first = start_beat(worker_bed, schedule, name="first")
    wait_for(lambda: job_runs(worker_bed, "ticks"), 10, "the first beat's first run")
    second = start_beat(worker_bed, schedule, name="second")
    wait_for(lambda: second.lines("waiting"), 10, "the second beat to wait")
    wait_for(lambda: len(first.lines("submitted run")) >= 3, 10, "three ticks")
    assert first.stop() == 0
    wait_for(lambda: len(second.lines("submitted run")) >= 2, 10, "two ticks of the second beat")
    assert second.stop() == 0

    assert len(second.lines("waiting: another beat")) == 1
    assert f"pid {first.proc.pid}" in second.lines("waiting")[0]
    log = second.log()
    assert "submitted run" not in log[: log.index("took over")]
    times = [submit_time(run) for run in job_runs(worker_bed, "ticks")]
    assert len(times) == len(first.lines("submitted run")) + len(second.lines("submitted run"))
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) > 0.5


@pytest.mark.system
def test_no_wait_exits_while_another_beat_runs(worker_bed, start_beat):
    """`--no-wait` gives a one-line error naming the running beat, and exit 1."""
    nap_project(worker_bed)
    schedule = write_schedule(worker_bed, """\
[[job]]
name = "nightly"
project = "nap"
op = "nap"
cron = "0 3 * * *"
""")
    first = start_beat(worker_bed, schedule)
    lock = BeatLock(str(worker_bed.runs_dir), str(schedule)).path
    wait_for(lambda: probe_path(lock) and f"pid {first.proc.pid}" in Path(lock).read_text(), 10,
             "the first beat to hold the schedule's lock, saying who it is")

    second = subprocess.run(
        [*worker_command(), "beat", "--schedule", str(schedule), "--no-wait", "--once"],
        capture_output=True, text=True, env=worker_bed.worker_env(), timeout=30,
    )
    assert second.returncode == 1
    assert second.stderr.startswith("gage-worker: error: another beat (host ")
    assert f"pid {first.proc.pid}) runs schedule {schedule}" in second.stderr
    assert len(second.stderr.splitlines()) == 1
    assert first.stop() == 0


@pytest.mark.system
def test_restart_recovers_the_last_run(worker_bed, start_beat):
    """A restarted beat finds the job's last run in the runs dir and skips while it is queued."""
    nap_project(worker_bed)
    schedule = write_schedule(worker_bed, """\
[[job]]
name = "daily"
project = "nap"
op = "nap"
every = "1s"
""")
    first = start_beat(worker_bed, schedule, "--once", name="first")
    assert first.proc.wait(30) == 0
    (run,) = job_runs(worker_bed, "daily")
    assert run_state(run) == "queued"

    wait_for(lambda: submit_time(run) + 1 < time.time(), 5, "a tick to be due")
    second = start_beat(worker_bed, schedule, "--once", name="second")
    assert second.proc.wait(30) == 0
    assert second.lines(f"daily: last run {run.id[:8]} ({run.name})")
    assert second.lines(f"daily: skipped: its last run {run.id[:8]} ({run.name}) is queued")
    assert [r.id for r in job_runs(worker_bed, "daily")] == [run.id]


@pytest.mark.system
def test_broker_down_at_a_tick(redis_bed, start_beat):
    """The tick logs one error line, the run stays queued, the beat keeps going; reconcile sends it.

    With the broker down the next ticks are skipped (the last run is
    queued). Once Redis and a worker are up, reconcile sends the run and
    it completes.
    """
    nap_project(redis_bed)
    schedule = write_schedule(redis_bed, """\
[[job]]
name = "down"
project = "nap"
op = "nap"
every = "1s"
""")
    redis_bed.redis.stop()
    beat = start_beat(redis_bed, schedule)
    wait_for(lambda: beat.lines("down: skipped"), 20, "a skipped tick after the failed send")
    assert beat.stop() == 0

    (run,) = job_runs(redis_bed, "down")
    (error,) = beat.lines("ERROR")
    assert f"down: error: run {run.id[:8]} ({run.name}) not sent: cannot reach the broker" in error
    assert f"run {run.id} stays staged and reconcile will send it" in error
    assert run_state(run) == "queued"

    redis_bed.redis.start()
    redis_bed.start_worker()
    assert redis_bed.wait_status([run]) == {run.id: "completed"}


# ---------------------------------------------------------------------
# Malformed schedules

VALID_JOB = """\
[[job]]
name = "good"
project = "nap"
op = "nap"
every = "1s"
"""


def bad_job(keys: str, *, project: str = "nap", op: str = "nap") -> str:
    """A valid job, then a job named `bad` with `keys`."""
    return VALID_JOB + f'[[job]]\nname = "bad"\nproject = "{project}"\nop = "{op}"\n{keys}\n'


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        pytest.param(VALID_JOB + "[[job]\nname = 'x'\n", None, "invalid TOML: ", id="toml-syntax"),
        pytest.param(bad_job('evry = "1s"'),
                     "job 'bad'", "unknown key 'evry' (did you mean 'every'?)", id="unknown-key"),
        pytest.param(bad_job('every = "1s"\ncron = "* * * * *"'),
                     "job 'bad'", "give exactly one of 'every' and 'cron'", id="every-and-cron"),
        pytest.param(bad_job(""), "job 'bad'", "give exactly one of 'every' and 'cron'",
                     id="no-trigger"),
        pytest.param(bad_job('cron = "0 25 * * *"'), "job 'bad'", "invalid hour field '25'",
                     id="bad-cron-field"),
        pytest.param(bad_job('cron = "0 0 * * * *"'), "job 'bad'", "cron '0 0 * * * *' has 6 fields",
                     id="cron-six-fields"),
        pytest.param(bad_job('every = "soon"'), "job 'bad'", "invalid every 'soon'", id="bad-every"),
        pytest.param(bad_job('every = "1s"', op="npa"),
                     "job 'bad'", "gage.toml has no operation 'npa' (did you mean 'nap'?)",
                     id="unknown-op"),
        pytest.param(bad_job('every = "1s"\nflags = { secs = 1 }'),
                     "job 'bad'", "unknown flag 'secs' for operation 'nap' (did you mean 'seconds'?)",
                     id="unknown-flag"),
        pytest.param(bad_job('every = "1s"\nflags = { seconds = "long" }'),
                     "job 'bad'", "invalid value for flag 'seconds': expected a number",
                     id="flag-type"),
        pytest.param(bad_job('every = "1s"', project="gone"), "job 'bad'", "/gone does not exist",
                     id="missing-project"),
        pytest.param(VALID_JOB + VALID_JOB, "job 'good'", "another job has the same name",
                     id="duplicate-name"),
        pytest.param("", None, "no jobs: add a [[job]] table", id="empty"),
    ],
)
def test_malformed_schedule_is_a_one_line_error(worker_bed, text, where, message):
    """Every job is checked before anything is written: one line naming file and job, exit 2."""
    nap_project(worker_bed)
    schedule = write_schedule(worker_bed, text)
    result = subprocess.run(
        [*worker_command(), "beat", "--schedule", str(schedule), "--once"],
        capture_output=True, text=True, env=worker_bed.worker_env(), timeout=30,
    )
    assert result.returncode == 2
    prefix = f"gage-worker: error: {schedule}: " + (f"{where}: " if where else "")
    assert result.stderr.startswith(prefix)
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert os.listdir(worker_bed.runs_dir) == []


def test_the_example_schedule_loads():
    """examples/schedule.toml (used by Procfile and deploy/compose.yaml) is valid."""
    schedule = load_schedule(str(REPO / "examples" / "schedule.toml"))
    assert [(job.name, str(job.trigger)) for job in schedule.jobs] == [
        ("nightly-train", "cron '0 3 * * *'"),
        ("smoke-train", "every 5m"),
    ]
    assert schedule.jobs[0].project_dir == str(HELLO)
    assert schedule.jobs[0].flags == {"lr": 0.05, "epochs": 3}
    assert schedule.jobs[0].time_limit == 3600


def test_missing_schedule_file(tmp_path):
    """A schedule path that does not exist is a ScheduleError naming it."""
    with pytest.raises(ScheduleError, match="does not exist"):
        load_schedule(str(tmp_path / "nope.toml"))


# ---------------------------------------------------------------------
# Cron expressions, triggers, durations (local times, away from DST changes)


def at(*args: int) -> float:
    return datetime(*args).timestamp()


@pytest.mark.parametrize(
    ("expr", "now", "expected"),
    [
        ("0 3 * * *", (2024, 1, 31, 12, 0), (2024, 2, 1, 3, 0)),
        ("0 3 * * *", (2024, 1, 31, 3, 0), (2024, 2, 1, 3, 0)),  # strictly after
        ("*/15 * * * *", (2024, 1, 10, 12, 7, 30), (2024, 1, 10, 12, 15)),
        ("5,35 8-9 * * *", (2024, 1, 10, 9, 40), (2024, 1, 11, 8, 5)),
        ("0 0 29 2 *", (2024, 3, 1, 0, 0), (2028, 2, 29, 0, 0)),
        ("0 0 1 * mon", (2024, 1, 2, 0, 0), (2024, 1, 8, 0, 0)),  # 1st OR Monday
        ("0 0 */10 * mon", (2024, 1, 2, 0, 0), (2024, 3, 11, 0, 0)),  # * first: AND
        ("0 0 1-7 * mon", (2024, 1, 2, 0, 0), (2024, 1, 3, 0, 0)),  # OR: the 3rd
        ("30 9 * JAN,feb sun", (2024, 1, 1, 0, 0), (2024, 1, 7, 9, 30)),
        ("0 12 * * 7", (2024, 1, 1, 0, 0), (2024, 1, 7, 12, 0)),  # 7 is Sunday
        ("0 12 * * fri-mon", (2024, 1, 2, 0, 0), (2024, 1, 5, 12, 0)),  # wraps
        ("0 0 1 jan-mar/2 *", (2024, 1, 15, 0, 0), (2024, 3, 1, 0, 0)),
    ],
)
def test_cron_next_time(expr, now, expected):
    """next_after gives the first matching local minute strictly after a time."""
    assert parse_cron(expr).next_after(at(*now)) == at(*expected)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "has 4 fields; expected 5"),
        ("60 * * * *", "invalid minute field '60'"),
        ("* 24 * * *", "invalid hour field '24'"),
        ("* * 0 * *", "invalid day of month field '0'"),
        ("* * * 13 *", "invalid month field '13'"),
        ("* * * * 8", "invalid day of week field '8'"),
        ("* * * mon *", "invalid month field 'mon': unknown name 'mon'"),
        ("* * * * jan", "invalid day of week field 'jan': unknown name 'jan'"),
        ("*/0 * * * *", "a step must be at least 1"),
        ("1-5/2-3 * * * *", "bad item '1-5/2-3'"),
        ("1,,2 * * * *", "bad item ''"),
        ("0 0 30 2 *", "never matches"),
    ],
)
def test_cron_errors(expr, message):
    """A malformed cron expression is a CronError naming the field."""
    with pytest.raises(CronError, match=re.escape(message)):
        parse_cron(expr)


def test_every_trigger_coalesces_missed_ticks():
    """An interval is due at once the first time, then every interval; overdue ticks run once, now."""
    every = Every(30)
    assert every.next_tick(None, 1000.0) == 1000.0
    assert every.next_tick(1000.0, 1010.0) == 1030.0
    assert every.next_tick(1000.0, 1095.0) == 1095.0


def test_cron_trigger_catches_up_only_recent_ticks():
    """A cron tick missed by up to CATCH_UP seconds is due at once; older ones are dropped."""
    nightly = CronTrigger(parse_cron("0 3 * * *"))
    three = at(2024, 1, 10, 3, 0)
    assert nightly.next_tick(None, three + CATCH_UP - 1) == three
    assert nightly.next_tick(None, three + CATCH_UP + 1) == at(2024, 1, 11, 3, 0)
    assert nightly.next_tick(three + 5, three + 30) == at(2024, 1, 11, 3, 0)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("90", 90), (1.5, 1.5), (" 2 m ", 120), ("1h30m", 5400)],
)
def test_durations(value, seconds):
    """Durations are a number of seconds or a number with s, m, h or d."""
    assert parse_duration(value, "every") == seconds


@pytest.mark.parametrize("value", ["0s", "-1", "1w", "", "400d", True, 0, float("inf")])
def test_bad_durations(value):
    """Zero, negative, unknown units and non-numbers are errors."""
    with pytest.raises(ScheduleError, match="invalid every"):
        parse_duration(value, "every")
