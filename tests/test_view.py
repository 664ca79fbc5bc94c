"""`gage-submit view` without a browser: what its pages read, and what it refuses.

The data layer (`gage_submit.view.data`, `live`) is called directly; the
access rules and headers are checked against a real `gage-submit view`
process over HTTP on a loopback port. The browser tests are in
test_view_browser.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from support.browser import Runs, start_view, view_missing

pytestmark = pytest.mark.skipif(view_missing() is not None, reason=str(view_missing()))

HOSTILE = '<script>console.log("pwned")</script><img src=x onerror="window.__pwned=1">'


@pytest.fixture
def runs(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    made = Runs(str(runs_dir))
    yield made
    made.close()


# ---------------------------------------------------------------------
# the runs table


def _query(**params):
    from starlette.datastructures import QueryParams

    from gage_submit.view.data import RunsQuery

    pairs = []
    for name, value in params.items():
        pairs += [(name, v) for v in (value if isinstance(value, list) else [value])]
    return RunsQuery.parse(QueryParams(pairs))


def test_first_page_reads_only_its_runs(runs, monkeypatch):
    from gage_submit.view import data

    for i in range(30):
        runs.make(config={"i": i})
    read = []
    real = data.run_info
    monkeypatch.setattr(data, "run_info", lambda run, **kw: read.append(run.id) or real(run, **kw))
    page = data.runs_page(runs.runs_dir, _query(n="10"))
    assert page.total == 30 and page.pages == 3
    assert [r["index"] for r in page.rows] == list(range(1, 11))
    assert len(read) == 10 and read == [r["id"] for r in page.rows]
    read.clear()
    page3 = data.runs_page(runs.runs_dir, _query(n="10", page="3"))
    assert [r["index"] for r in page3.rows] == list(range(21, 31)) and len(read) == 10
    oldest = data.runs_page(runs.runs_dir, _query(n="10", sort="started"))
    assert [r["index"] for r in oldest.rows] == list(range(30, 20, -1))


def test_filters_and_sorting(runs):
    from gage_submit.view import data

    a = runs.make(op="train", label="base one")
    b = runs.start(runs.make(op="eval", label="other"))
    c = runs.finish(runs.start(runs.make(op="train", label="base two")), metrics={"loss": 1})
    ids = lambda page: [r["id"] for r in page.rows]  # noqa: E731
    assert ids(data.runs_page(runs.runs_dir, _query(op="train"))) == [c.id, a.id]
    assert ids(data.runs_page(runs.runs_dir, _query(status="running"))) == [b.id]
    assert ids(data.runs_page(runs.runs_dir, _query(status=["queued", "completed"]))) == [c.id, a.id]
    assert ids(data.runs_page(runs.runs_dir, _query(label="base"))) == [c.id, a.id]
    me = data.run_user(a.run_dir)
    assert len(data.runs_page(runs.runs_dir, _query(user=me)).rows) == 3
    assert data.runs_page(runs.runs_dir, _query(user="nobody-such")).rows == []
    assert ids(data.runs_page(runs.runs_dir, _query(sort="label"))) == [a.id, c.id, b.id]
    assert ids(data.runs_page(runs.runs_dir, _query(sort="-label"))) == [b.id, c.id, a.id]
    assert ids(data.runs_page(runs.runs_dir, _query(sort="status")))[0] == c.id  # completed
    bad = _query(sort="nonsense", page="-4", n="x", status="no-such")
    assert (bad.sort, bad.page, bad.size, bad.statuses) == ("-started", 1, 50, ())


def test_rows_watch_reports_changes_only(runs):
    from gage_queue.states import RunState
    from gage_submit.view.live import RowsWatch

    run = runs.make()
    watch = RowsWatch(runs.runs_dir, [run.id, "../etc", "not-an-id"], None)
    rows, _ = watch.poll()
    assert [(r["id"], r["status"]) for r in rows] == [(run.id, "queued")]
    assert watch.poll() == ([], False)
    runs.start(run)
    rows, _ = watch.poll()
    assert rows[0]["status"] == RunState.RUNNING.value and rows[0]["host"] == runs.host
    runs.finish(run)
    assert watch.poll()[0][0]["status"] == "completed"
    runs.make()  # a new run: the listing changed
    assert watch.poll()[1] is True


# ---------------------------------------------------------------------
# output


def test_output_tail_then_follow(runs):
    from gage_submit.view.data import OutputReader

    run = runs.start(runs.make())
    runs.write_output(run, "".join(f"line {i}\n" for i in range(20000)))
    reader = OutputReader(run)
    tail = reader.tail(limit=1000)
    assert tail.endswith("line 19999\n") and tail.startswith("line ") and len(tail) <= 1000
    assert reader.more() == ""
    runs.write_output(run, "new\r\nprogress 1\rprogress 2\n\x1b[31mred\x1b[0m \u202eevil\n")
    assert reader.more() == "new\nprogress 1\nprogress 2\n\\x1b[31mred\\x1b[0m \\u202eevil\n"
    path = os.path.join(run.meta_dir, "output", "40_run")
    with open(path, "ab") as f:
        f.write("caf\u00e9".encode()[:-1])  # a character cut in two by the write
    assert reader.more() == "caf"
    with open(path, "ab") as f:
        f.write("caf\u00e9".encode()[-1:] + b"\n")
    assert reader.more() == "\u00e9\n"
    resumed = OutputReader(run)
    assert resumed.since(os.path.getsize(path) - 4) == "f\u00e9\n"


def test_output_is_never_read_through_a_link_or_fifo(runs, tmp_path):
    from gage_submit.view.data import OutputReader

    run = runs.make()
    secret = tmp_path / "secret"
    secret.write_text("secret\n")
    os.makedirs(os.path.join(run.meta_dir, "output"))
    path = os.path.join(run.meta_dir, "output", "40_run")
    os.symlink(secret, path)
    assert OutputReader(run).tail() == ""
    os.remove(path)
    os.mkfifo(path)
    start = time.monotonic()
    assert OutputReader(run).tail() == "" and time.monotonic() - start < 1


# ---------------------------------------------------------------------
# files


@pytest.fixture
def run_with_files(runs, tmp_path):
    run = runs.make()
    root = run.run_dir
    os.makedirs(os.path.join(root, "sub"))
    with open(os.path.join(root, "train.py"), "w") as f:
        f.write("print('hi')\n")
    with open(os.path.join(root, "sub", "notes.txt"), "w") as f:
        f.write("notes\n")
    with open(os.path.join(root, "model.bin"), "wb") as f:
        f.write(b"\x00\x01\x02" * 100)
    (tmp_path / "outside.txt").write_text("outside the run\n")
    os.symlink(tmp_path / "outside.txt", os.path.join(root, "escape.txt"))
    os.symlink("../" + os.path.basename(root) + ".meta/opref", os.path.join(root, "meta-link"))
    os.symlink(str(tmp_path), os.path.join(root, "outdir"))
    os.symlink("sub/notes.txt", os.path.join(root, "inside-link.txt"))
    os.mkfifo(os.path.join(root, "fifo"))
    return run


def test_files_listed_with_links_marked(run_with_files):
    from gage_submit.view.data import run_files

    files, cut = run_files(run_with_files)
    kinds = {f.path: f.kind for f in files}
    assert not cut
    assert kinds == {
        "escape.txt": "outside", "fifo": "other", "inside-link.txt": "link",
        "meta-link": "outside", "model.bin": "file", "outdir": "outside",
        "sub/notes.txt": "file", "train.py": "file",
    }


@pytest.mark.parametrize("path", [
    "../etc/passwd", "/etc/passwd", "sub/../../x", "sub/../train.py", "./train.py", "",
    "sub//notes.txt", "escape.txt", "meta-link", "outdir/outside.txt", "fifo", "sub",
    "a\\..\\b", "train.py\x00",
])
def test_paths_that_leave_the_run_are_refused(run_with_files, path):
    from gage_submit.view.data import NotFound, Refused, read_run_file

    with pytest.raises((Refused, NotFound)):
        read_run_file(run_with_files, path)


def test_files_inside_the_run_are_shown(run_with_files):
    from gage_submit.view.data import read_run_file

    assert read_run_file(run_with_files, "train.py").text == "print('hi')\n"
    linked = read_run_file(run_with_files, "inside-link.txt")
    assert linked.text == "notes\n" and linked.link == "sub/notes.txt"
    binary = read_run_file(run_with_files, "model.bin")
    assert binary.text is None and binary.size == 300
    cut = read_run_file(run_with_files, "sub/notes.txt", limit=3)
    assert cut.text == "not" and cut.truncated


# ---------------------------------------------------------------------
# compare and the pool


def test_compare_table_and_csv(runs):
    from gage_submit.view.data import compare_csv, compare_table

    a = runs.completed(config={"lr": 0.1, "name": "=HYPERLINK(1)"}, metrics={"loss": -0.5})
    b = runs.completed(config={"lr": 0.2, "lr2": True}, metrics={"loss": 0.25, "lr": 3})
    table = compare_table([a, b])
    assert table["flags"] == ["lr", "lr2", "name"] and table["metrics"] == ["loss", "metric:lr"]
    assert table["rows"][0]["values"] == [0.1, None, "=HYPERLINK(1)", -0.5, None]
    assert table["rows"][1]["values"] == [0.2, "true", None, 0.25, 3]
    lines = compare_csv([a, b]).splitlines()
    assert lines[0] == "id,run,op,status,lr,lr2,name,loss,metric:lr"
    assert lines[1].endswith(",completed,0.1,,'=HYPERLINK(1),-0.5,")  # a formula is text


def test_pool_from_locks_and_the_active_index(runs):
    from support.browser import demo_pool

    from gage_queue.layout import gpu_lock
    from gage_queue.locks import open_lock_file
    from gage_submit.view.data import pool_snapshot

    running = runs.start(runs.make(queue="gage"), slot="slot 1")
    waiting = [runs.make(queue="gpu"), runs.make(queue="gpu")]
    runs.finish(runs.start(runs.make()))
    node_dir = runs.node.replace("/", "_")
    os.close(open_lock_file(gpu_lock(runs.runs_dir, runs.host, "0"), create=True))
    with demo_pool(runs.runs_dir, runs.host, runs.node, 2):
        from gage_queue.layout import slot_lock
        from gage_queue.locks import lock_fd

        fd = open_lock_file(slot_lock(runs.runs_dir, runs.host, node_dir, 1), create=True)
        assert lock_fd(fd)
        try:
            pool = pool_snapshot(runs.runs_dir)
        finally:
            os.close(fd)
    (host,) = pool["hosts"]
    assert host["name"] == runs.host and host["alive"]
    assert host["gpus"] == [{"name": "gpu 0", "held": False, "run": None}]
    (node,) = host["nodes"]
    assert node["name"] == node_dir and node["alive"] is True
    assert [(s["name"], s["held"], (s["run"] or {}).get("id")) for s in node["slots"]] == [
        ("slot 0", False, None), ("slot 1", True, running.id)]
    queues = {q["name"]: q for q in pool["queues"]}
    assert queues["gage"]["consumed"] and queues["gage"]["waiting"] == []
    assert not queues["gpu"]["consumed"]
    assert [r["id"] for r in queues["gpu"]["waiting"]] == [w.id for w in waiting]  # FIFO
    assert {r["id"] for r in pool["active"]} == {running.id, *(w.id for w in waiting)}


# ---------------------------------------------------------------------
# the command


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)


def test_cli_loads_no_web_framework():
    code = ("import sys, gage_submit.cli as c\n"
            "c.run(['--help'])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in"
            " ('starlette', 'uvicorn', 'jinja2', 'plotly', 'anyio')))")
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert "view" in result.stdout and result.stdout.strip().endswith("[]")


def test_without_the_extra_one_line_and_exit_2(tmp_path):
    code = ("import sys; sys.modules['starlette'] = None\n"
            "from gage_submit.cli import run\n"
            f"sys.exit(run(['view', '--runs-dir', {str(tmp_path)!r}]))")
    result = _python(code)
    assert result.returncode == 2
    assert result.stderr == ("gage-submit: error: the web view needs starlette:"
                             " pip install 'gage-queue[view]'\n")


# ---------------------------------------------------------------------
# over HTTP: headers, hosts, tokens, actions


@pytest.fixture
def server(runs):
    started = start_view(runs.runs_dir)
    yield started
    started.stop()


def test_every_response_has_the_security_headers(server, runs):
    run = runs.make(label=HOSTILE)
    for path in ("/", f"/runs/{run.id}", "/pool", "/compare", "/static/common.js",
                 "/api/runs", "/no/such/page", f"/runs/{run.id}/file?path=../x"):
        status, headers, _ = server.get(path)
        csp = headers["content-security-policy"]
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp.split("style-src")[0]
        assert "unsafe-eval" not in csp and "default-src 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path


def test_hostile_text_is_escaped_in_html(server, runs):
    run = runs.make(label=HOSTILE, config={HOSTILE: HOSTILE})
    runs.write_output(run, HOSTILE + "\n")
    _, _, body = server.get("/")
    assert b"<script>console" not in body and b"<img src=x" not in body
    assert b"&lt;script&gt;console.log(&#34;pwned&#34;)&lt;/script&gt;" in body
    _, _, body = server.get(f"/runs/{run.id}")
    assert b"<script>console" not in body and body.count(b"&lt;script&gt;") >= 3
    _, _, body = server.get("/api/runs?label=pwned")
    assert json.loads(body)["rows"][0]["label"] == HOSTILE  # JSON: exact, set as text


def test_traversal_over_http_is_refused(server, runs, tmp_path):
    run = runs.make()
    (tmp_path / "secret.txt").write_text("the secret\n")
    os.symlink(tmp_path / "secret.txt", os.path.join(run.run_dir, "link.txt"))
    for path in (f"/runs/{run.id}/file?path=../../secret.txt",
                 f"/runs/{run.id}/file?path=%2e%2e/%2e%2e/secret.txt",
                 f"/runs/{run.id}/file?path=/etc/passwd",
                 f"/runs/{run.id}/file?path=link.txt",
                 "/runs/..%2f..%2fetc/file?path=passwd",
                 f"/runs/{run.id[:8]}/file?path=x"):
        status, _, body = server.get(path)
        assert status in (403, 404), path
        assert b"the secret" not in body and b"root:" not in body


def test_loopback_only_answers_loopback_names(server):
    assert server.get("/")[0] == 200
    assert server.get("/", headers={"host": "localhost"})[0] == 200
    assert server.get("/", headers={"host": "attacker.example:80"})[0] == 403


def test_read_only_refuses_actions(server, runs):
    run = runs.make()
    assert "read-only" in server.banner
    status, _, body = server.post(f"/api/runs/{run.id}/cancel")
    assert status == 403 and b"read-only" in body
    _, _, page = server.get(f"/runs/{run.id}")
    assert b"gage-actions" not in page and b'id="cancel"' not in page
    assert not os.path.getsize(os.path.join(run.meta_dir, "queue", "cancel"))


def test_actions_need_the_tokens(runs):
    run = runs.make()
    server = start_view(runs.runs_dir, "--allow-actions")
    try:
        assert server.token and "actions on" in server.banner and "token is needed" in server.banner
        cancel = f"/api/runs/{run.id}/cancel"
        assert server.get("/")[0] == 403
        assert server.post(cancel)[0] == 403  # no cookie
        status, headers, _ = server.get(f"/?token={server.token}&page=1")
        assert status == 303 and headers["location"] == "/?page=1"
        cookie = headers["set-cookie"].split(";")[0]
        assert "httponly" in headers["set-cookie"].lower()
        assert "samesite=strict" in headers["set-cookie"].lower()
        assert server.get("/?token=wrong")[0] == 403
        _, _, page = server.get("/", cookie=cookie)
        actions = page.split(b'name="gage-actions" content="')[1].split(b'"')[0].decode()
        assert actions != server.token
        assert server.post(cancel, cookie=cookie)[0] == 403  # no actions token
        assert server.post(cancel, cookie=cookie, headers={"x-gage-actions": "x" * 64})[0] == 403
        cross = {"x-gage-actions": actions, "origin": "http://attacker.example"}
        assert server.post(cancel, cookie=cookie, headers=cross)[0] == 403
        sites = {"x-gage-actions": actions, "sec-fetch-site": "cross-site"}
        assert server.post(cancel, cookie=cookie, headers=sites)[0] == 403
        assert server.post(cancel, headers={"x-gage-actions": actions})[0] == 403  # no cookie
        assert not os.path.getsize(os.path.join(run.meta_dir, "queue", "cancel"))
        own = {"x-gage-actions": actions, "origin": server.url.rstrip("/")}
        status, _, body = server.post(cancel, cookie=cookie, headers=own)
        assert status == 200 and json.loads(body) == {"status": "queued", "requested": True}
        assert os.path.getsize(os.path.join(run.meta_dir, "queue", "cancel"))
        label = f"/api/runs/{run.id}/label"
        assert server.post(label, {"label": "bad\x1b[2J"}, cookie=cookie, headers=own)[0] == 400
        assert server.post(label, {"label": "tuned"}, cookie=cookie, headers=own)[0] == 200
        from gage_runs.sidecars import run_label

        assert run_label(run) == "tuned"
    finally:
        server.stop()


def test_other_addresses_need_the_token(runs):
    server = start_view(runs.runs_dir, "--host", "127.0.0.2")
    try:
        assert server.url.startswith("http://127.0.0.2:") and server.token
        assert "it listens on 127.0.0.2, not on 127.0.0.1" in server.banner
        assert "read-only" in server.banner
        assert server.get("/")[0] == 403
        assert server.get("/api/runs")[0] == 403
        assert server.get("/events/runs")[0] == 403
        status, headers, _ = server.get(f"/?token={server.token}")
        cookie = headers["set-cookie"].split(";")[0]
        assert server.get("/", cookie=cookie)[0] == 200
        assert server.get("/", cookie=cookie.split("=")[0] + "=nope")[0] == 403
    finally:
        server.stop()


def test_a_port_in_use_is_one_line_and_exit_2(server, runs):
    port = server.url.rsplit(":", 1)[1].rstrip("/")
    code = ("import sys\nfrom gage_submit.cli import run\n"
            f"sys.exit(run(['view', '--runs-dir', {runs.runs_dir!r}, '--port', {port!r}]))")
    result = _python(code)
    assert result.returncode == 2
    assert result.stderr == (f"gage-submit: error: cannot listen on 127.0.0.1:{port}:"
                             " Address already in use\n")
