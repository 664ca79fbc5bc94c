"""Benchmark: the web view's runs table over a big runs dir.

    python bench/view.py [--sizes 1000,10000] [--active 20] [--no-browser] [--dir DIR]

For each size, a runs dir of that many finished runs plus `--active`
active ones (queued, running on another host, finalizing,
finalize-failed), built as bench/scale.py builds them (its
`make_finished` and `make_active`). The view is served in this process
(the real app on uvicorn, on a free loopback port) so that file
operations are counted while it answers, as bench/scale.py counts them
(`open`, `os.open`, `listdir` and `scandir` are opens; `stat` and `lstat`
are stats).

Printed per size (medians of 5):

- `GET /`: the runs page with its first 50 rows, rendered on the server:
  time, opens and stats;
- `GET /api/runs`: the same rows as JSON;
- `GET /?sort=label` and `GET /?status=running`: a sort that reads every
  run (through `list`'s row cache) and a filter answered from the active
  index;
- in headless Chromium (unless `--no-browser`): from navigation start to
  the table in the DOM (`domContentLoadedEventEnd`), and to the live
  stream open.

Targets: the first page under 1 s at 10,000 runs, in the browser too, and
its opens independent of the runs dir's size (the page's runs only: within
10% between the sizes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

from scale import MINUTE_US, counting, make_active, make_finished  # noqa: E402

TARGET_SECONDS = 1.0
REPS = 5


def serve_in_thread(runs_dir: str):
    """The view's app on uvicorn in a thread of this process; (server, base URL)."""
    import uvicorn

    from gage_submit.view.app import ViewConfig, make_app
    from gage_submit.view.guard import Guard
    from gage_submit.view.serve import bind

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = make_app(ViewConfig(runs_dir, Guard("127.0.0.1", port)))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("the view did not start")
        time.sleep(0.02)
    return server, thread, url


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def measure(url: str) -> tuple[float, int, int, int]:
    """Median seconds, opens and stats of REPS requests, and the body's size."""
    times, opens, stats = [], [], []
    size = 0
    for _ in range(REPS):
        with counting() as counts:
            start = time.perf_counter()
            size = len(fetch(url))
            times.append(time.perf_counter() - start)
        opens.append(counts.opens)
        stats.append(counts.stats)
    return statistics.median(times), int(statistics.median(opens)), \
        int(statistics.median(stats)), size


def browser_times(url: str) -> tuple[float, float]:
    """Seconds from navigation start to the table in the DOM, and to the live stream open."""
    from support.browser import chrome, wait_until

    driver = chrome()
    try:
        driver.get(url)  # once to warm the browser's cache of scripts and styles
        dom, live = [], []
        for _ in range(REPS):
            start = time.perf_counter()
            driver.get(url)
            wait_until(driver, lambda d: d.find_elements("css selector", "#live.on"), 10)
            live.append(time.perf_counter() - start)
            dom.append(driver.execute_script(
                "const n = performance.getEntriesByType('navigation')[0];"
                "return n.domContentLoadedEventEnd - n.startTime;") / 1000)
        return statistics.median(dom), statistics.median(live)
    finally:
        driver.quit()


def bench_size(size: int, active: int, root: str, browser: bool) -> tuple[bool, int]:
    runs_dir = os.path.join(root, f"runs-{size}")
    os.makedirs(runs_dir)
    held: list = []
    start = time.perf_counter()
    make_finished(runs_dir, size, time.time_ns() // 1000 - (size + 10) * MINUTE_US)
    make_active(runs_dir, active, held)
    print(f"\n== {size:,} finished + {active} active runs (built in "
          f"{time.perf_counter() - start:.1f} s)", flush=True)
    os.environ["XDG_CACHE_HOME"] = os.path.join(root, f"cache-{size}")  # list's row cache
    server, thread, url = serve_in_thread(runs_dir)
    ok = True
    first_opens = 0
    try:
        fetch(url + "?sort=label")  # fills the row cache, as a user who sorted once has it
        for label, path in (("GET / (first page)", ""), ("GET /api/runs", "api/runs"),
                            ("GET /?sort=label", "?sort=label"),
                            ("GET /?status=running", "?status=running")):
            seconds, opens, stats, body = measure(url + path)
            line = (f"{label:22} {seconds * 1000:7.1f} ms  {opens:6,} opens  {stats:7,} stats"
                    f"  {body / 1024:6.1f} kB")
            if path == "":
                first_opens = opens
                if size >= 10_000:
                    ok &= seconds < TARGET_SECONDS
                    line += f"  (target < {TARGET_SECONDS:g} s)"
            print(line, flush=True)
        if browser:
            dom, live = browser_times(url)
            line = (f"{'chromium: table shown':22} {dom * 1000:7.1f} ms"
                    f"  (live stream open after {live * 1000:.0f} ms)")
            if size >= 10_000:
                ok &= dom < TARGET_SECONDS
                line += f"  (target < {TARGET_SECONDS:g} s)"
            print(line, flush=True)
    finally:
        server.should_exit = True
        thread.join(10)
        for lock in held:
            lock.release()
    return ok, first_opens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="finished runs per dir")
    parser.add_argument("--active", type=int, default=20, help="active runs (a multiple of 10)")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium timing")
    parser.add_argument("--dir", help="where the temp dir goes (default: the system's)")
    args = parser.parse_args()
    browser = not args.no_browser
    if browser:
        from support.browser import browser_missing

        if browser_missing():
            print(f"no browser timing: {browser_missing()}")
            browser = False
    root = tempfile.mkdtemp(prefix="gage-view-bench-", dir=args.dir)
    ok = True
    opens = []
    try:
        for size in (int(s) for s in args.sizes.split(",") if s):
            size_ok, first_opens = bench_size(size, args.active, root, browser)
            ok &= size_ok
            opens.append(first_opens)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if len(opens) > 1:
        flat = max(opens) <= min(opens) * 1.1
        ok &= flat
        print(f"\nfirst page opens by size: {', '.join(map(str, opens))}"
              f" ({'independent of' if flat else 'GROWING with'} the runs dir's size)")
    print("\nall targets met" if ok else "\nSOME TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
