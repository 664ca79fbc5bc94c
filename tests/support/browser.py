"""The web view's test bed: runs in chosen states, a real `gage-submit view`, headless Chromium.

- `Runs`: runs made in a runs dir the way submit, the keeper and finalize
  leave them (the real run lock and record through `tests.support.records`),
  moved from state to state by writing their files: queued -> running
  (a held lock, as a live keeper holds it) -> completed.
- `ViewServer`: `gage-submit view --port 0` as a subprocess; its URL (and
  token) from the line it prints at start.
- `chrome()`: Debian's chromium through its chromedriver (Selenium), with
  the browser console readable (`console_lines`).

`python -m tests.support.browser DIR` builds a runs dir of every kind of
run, serves it and saves a screenshot of each page into DIR (`make
screenshots`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gage_queue import active
from gage_queue.locks import RunLock, hold_host_alive, lock_fd, open_lock_file
from gage_queue.record import RunRecord
from gage_queue.states import EndReason, RunState
from gage_runs.meta import init_run_meta, make_run, make_run_timestamp, write_timestamp
from gage_runs.sidecars import log_user_attrs
from gage_runs.types import OpCmd, OpDef, OpRef, Run

from .records import hold, submitted

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def browser_missing() -> str | None:
    """Why no browser test can run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def view_missing() -> str | None:
    """Why the view cannot run here (its extra is not installed), or None."""
    import importlib.util

    for name in ("starlette", "uvicorn", "jinja2", "plotly"):
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed (pip install -e '.[view]')"
    return None


# ---------------------------------------------------------------------
# runs


@dataclass
class Runs:
    """Runs of one runs dir, in chosen states; `close()` releases the locks held."""

    runs_dir: str
    host: str = "gpu-host-1"
    node: str = "gage@gpu-host-1"
    locks: dict[str, RunLock] = field(default_factory=dict)

    def make(self, *, op: str = "train", config: dict[str, Any] | None = None,
             label: str | None = None, queue: str = "gage", opref: OpRef | None = None) -> Run:
        """A queued run: staged and submitted, nothing started it."""
        opdef = OpDef(op, {"exec": "python train.py"})
        run = make_run(opref or OpRef("proj", op), self.runs_dir)
        init_run_meta(run, opdef, config or {}, OpCmd("python train.py", {}))
        os.makedirs(run.run_dir, exist_ok=True)
        write_timestamp(run, "staged")
        if label is not None:
            log_user_attrs(run, {"label": label})
        return submitted(run, queue=queue)

    def start(self, run: Run, *, slot: str | None = "slot 0") -> Run:
        """Running: its `started` written and its lock held with a running record."""
        write_timestamp(run, "started")
        os.makedirs(os.path.join(run.meta_dir, "output"), exist_ok=True)
        self.locks[run.id] = hold(run, state=RunState.RUNNING, host=self.host, node=self.node,
                                  slot=slot, pid=os.getpid(), started=make_run_timestamp())
        return run

    def write_output(self, run: Run, text: str) -> None:
        """Append to the run's output, as its keeper does."""
        os.makedirs(os.path.join(run.meta_dir, "output"), exist_ok=True)
        with open(os.path.join(run.meta_dir, "output", "40_run"), "a") as f:
            f.write(text)

    def finish(self, run: Run, *, exit_code: int = 0,
               metrics: dict[str, Any] | None = None) -> Run:
        """Ended as finalize leaves it: exit code, `stopped`, summary, the record, no index entry."""
        lock = self.locks.pop(run.id, None)
        os.makedirs(os.path.join(run.meta_dir, "proc"), exist_ok=True)
        write_timestamp(run, "stopped")
        with open(os.path.join(run.meta_dir, "proc", "exit"), "w") as f:
            f.write(str(exit_code))
        summary = {"metrics": {k: {"value": v} for k, v in (metrics or {}).items()}}
        with open(os.path.join(run.meta_dir, "summary.json"), "w") as f:
            json.dump(summary, f)
        state = RunState.COMPLETED if exit_code == 0 else RunState.ERROR
        reason = EndReason.COMPLETED if exit_code == 0 else EndReason.FAILED
        if lock is None:
            from gage_queue.locks import try_lock

            lock = try_lock(run)
            assert lock is not None
        started = lock.record().started
        lock.commit(RunRecord(state, exit_code=exit_code, reason=reason,
                              detail="completed" if exit_code == 0 else f"exit {exit_code}",
                              host=self.host, node=self.node, started=started,
                              ended=make_run_timestamp()))
        lock.release()
        active.remove(self.runs_dir, run.id)
        return run

    def completed(self, *, config: dict[str, Any], metrics: dict[str, Any],
                  label: str | None = None, output: str = "") -> Run:
        run = self.start(self.make(config=config, label=label))
        if output:
            self.write_output(run, output)
        return self.finish(run, metrics=metrics)

    def close(self) -> None:
        for lock in self.locks.values():
            lock.release()
        self.locks.clear()


# ---------------------------------------------------------------------
# the server


@dataclass
class ViewServer:
    proc: subprocess.Popen
    url: str  # the base URL, ending in "/"
    token: str | None
    banner: str

    def get(self, path: str, *, cookie: str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return request(self.url.rstrip("/") + path, cookie=cookie, headers=headers)

    def post(self, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
             cookie: str | None = None) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body or {}).encode()
        return request(self.url.rstrip("/") + path, data=data, cookie=cookie,
                       headers={"content-type": "application/json", **(headers or {})})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def request(url: str, *, data: bytes | None = None, cookie: str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request, redirects not followed: status, headers (lower-case), body."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    if cookie:
        req.add_header("cookie", cookie)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, \
                response.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def gage_submit_command() -> list[str]:
    script = shutil.which("gage-submit", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-c",
                                    "from gage_submit.cli import main; main()"]


def start_view(runs_dir: str, *args: str, env: dict[str, str] | None = None) -> ViewServer:
    """`gage-submit view --runs-dir RUNS --port 0 ARGS...`, once it serves."""
    proc = subprocess.Popen(
        [*gage_submit_command(), "view", "--runs-dir", runs_dir, "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=runs_dir,
        env={**os.environ, **(env or {})}, start_new_session=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    found = re.search(r" at (http://\S+)", first)
    if not found:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"gage-submit view did not start: {first!r} {err!r}")
    banner = first
    while True:  # the rest of the start message: until the server answers
        line = proc.stdout.readline()
        banner += line
        if not line.startswith("  "):
            break
        if "read-only" in line or "actions on" in line:
            break
    url = found.group(1)
    token = None
    if "?token=" in url:
        url, token = url.split("?token=", 1)
    server = ViewServer(proc, url, token, banner)
    deadline = time.monotonic() + 20
    while True:
        try:
            request(url + "static/view.css")
            return server
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise AssertionError(
                    f"gage-submit view never answered: {proc.stderr.read()!r}") from None
            time.sleep(0.05)


# ---------------------------------------------------------------------
# the browser


def chrome(width: int = 1300, height: int = 900):
    """Headless Debian Chromium through its chromedriver; the console is kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--disable-extensions",
                "--no-first-run", "--disable-background-networking"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


def console_lines(driver) -> list[str]:
    """What the page logged to the console since the last call."""
    return [f"{entry['level']} {entry['message']}" for entry in driver.get_log("browser")]


def wait_until(driver, predicate, timeout: float = 5.0, what: str = "the page") -> Any:
    """`predicate(driver)` once it is true; an element the page replaced while the predicate
    read it (a live page re-renders its nodes) counts as not yet."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate(driver)
        except StaleElementReferenceException:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------------
# screenshots


@contextmanager
def demo_pool(runs_dir: str, host: str, node: str, slots: int) -> Iterator[None]:
    """Hold the locks a live worker holds: its host, its node name, its queue, its slots."""
    from gage_queue.consumers import announce_queues
    from gage_queue.layout import node_lock, slot_lock

    fds = [hold_host_alive(runs_dir, host), *announce_queues(runs_dir, ["gage"])]
    fd = open_lock_file(node_lock(runs_dir, host, node), create=True)
    lock_fd(fd)
    fds.append(fd)
    for n in range(slots):
        open_lock_file(slot_lock(runs_dir, host, node, n), create=True)
    try:
        yield
    finally:
        for fd in fds:
            os.close(fd)


def demo_runs(runs: Runs) -> dict[str, Run]:
    """Runs of every kind, as a runs dir that has been used for a while has them."""
    from gage_queue.layout import slot_lock

    made = {}
    for i, (lr, loss, acc) in enumerate(((0.1, 0.62, 0.71), (0.03, 0.41, 0.83),
                                         (0.01, 0.35, 0.88), (0.003, 0.39, 0.86))):
        made[f"done{i}"] = runs.completed(
            config={"lr": lr, "epochs": 10 + 5 * i, "optimizer": "adam" if i % 2 else "sgd"},
            metrics={"loss": loss, "accuracy": acc},
            label="baseline" if i == 0 else f"sweep lr={lr}",
            output="".join(f"epoch {e}: loss={loss + 0.5 / (e + 1):.3f}\n" for e in range(10)))
    failed = runs.start(runs.make(config={"lr": 1.0, "epochs": 10, "optimizer": "sgd"},
                                  label="too hot"))
    runs.write_output(failed, "epoch 0: loss=nan\nTraceback (most recent call last):\n"
                              "  ...\nFloatingPointError: loss is nan\n")
    made["failed"] = runs.finish(failed, exit_code=1)
    node_dir = runs.node.replace("/", "_")
    for n in range(2):  # the slots exist on disk as the worker made them
        open_lock_file(slot_lock(runs.runs_dir, runs.host, node_dir, n), create=True)
    running = runs.start(runs.make(config={"lr": 0.02, "epochs": 40, "optimizer": "adam"},
                                   label="long run"))
    # the run holds its slot lock, as a keeper's run does
    slot_fd = open_lock_file(slot_lock(runs.runs_dir, runs.host, node_dir, 0), create=True)
    lock_fd(slot_fd)
    runs.locks[running.id + "-slot"] = _FdLock(slot_fd)  # released with the others
    runs.write_output(running, "".join(f"epoch {e}: loss={0.9 - e * 0.02:.3f}\n"
                                       for e in range(14)))
    made["running"] = running
    _demo_files(running)
    made["queued"] = runs.make(config={"lr": 0.005, "epochs": 40, "optimizer": "adam"},
                               label="next")
    made["queued2"] = runs.make(config={"lr": 0.001, "epochs": 40, "optimizer": "adam"},
                                queue="gpu")
    return made


def _demo_files(run: Run) -> None:
    """A run dir as a training run leaves it: source, config, a checkpoint, logs."""
    files = {
        "train.py": "import json\nlr = 0.02\nepochs = 40\n\nfor epoch in range(epochs):\n    ...\n",
        "gage.toml": "[train]\nexec = \"python train.py\"\n",
        "logs/metrics.csv": "epoch,loss\n0,0.900\n1,0.880\n",
    }
    for name, content in files.items():
        path = os.path.join(run.run_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)
    with open(os.path.join(run.run_dir, "checkpoint.pt"), "wb") as f:
        f.write(bytes(range(256)) * 16)


class _FdLock:
    def __init__(self, fd: int):
        self.fd = fd

    def release(self) -> None:
        os.close(self.fd)


def screenshots(out_dir: str) -> list[str]:
    """A screenshot of each page of the view over a demo runs dir, saved in `out_dir`."""
    import tempfile

    os.makedirs(out_dir, exist_ok=True)
    root = tempfile.mkdtemp(prefix="gage-view-shots-")
    runs_dir = os.path.join(root, "runs")
    os.makedirs(runs_dir)
    runs = Runs(runs_dir)
    saved = []
    try:
        made = demo_runs(runs)
        with demo_pool(runs_dir, runs.host, runs.node, 2):
            server = start_view(runs_dir, "--allow-actions")
            driver = chrome(1400, 900)
            try:
                driver.get(f"{server.url}?token={server.token}")
                done = [made[f"done{i}"].id for i in range(4)]
                pages = (
                    ("runs.png", "", "#runs tbody tr"),
                    ("run.png", f"runs/{made['running'].id}", "#output:not(:empty)"),
                    ("compare.png", "compare?" + "&".join(f"run={i}" for i in done),
                     "#parallel[data-plotted]"),
                    ("pool.png", "pool", "#hosts .host"),
                )
                for name, path, ready in pages:
                    driver.get(server.url + path)
                    wait_until(driver, lambda d, r=ready: d.find_elements("css selector", r),
                               10, ready)
                    time.sleep(0.8)  # let the live stream's first events land
                    height = driver.execute_script("return document.body.scrollHeight")
                    driver.set_window_size(1400, min(max(900, height + 140), 2400))
                    time.sleep(0.8)  # plots redraw at the new size
                    driver.execute_script("window.scrollTo(0, 0)")
                    target = os.path.join(out_dir, name)
                    driver.save_screenshot(target)
                    driver.set_window_size(1400, 900)
                    saved.append(target)
            finally:
                driver.quit()
                server.stop()
    finally:
        runs.close()
        shutil.rmtree(root, ignore_errors=True)
    return saved


if __name__ == "__main__":
    for path in screenshots(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"):
        print(path)
