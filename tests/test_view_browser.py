"""`gage-submit view` in a real headless browser (Debian's chromium), checked in the DOM.

Runs change state by their files, as a keeper and finalize change them
(`support.browser.Runs`: the real record through the real run lock); the
page must follow within 2 s without a reload: a marker set on `window`
before the change is still there after it (a reload would drop it).
"""

from __future__ import annotations

import os
import time

import pytest
from support.browser import (
    Runs,
    browser_missing,
    chrome,
    console_lines,
    start_view,
    view_missing,
    wait_until,
)

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(view_missing() is not None, reason=str(view_missing())),
    pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing())),
]

LIVE_SECONDS = 2.0
HOSTILE = ('<script>console.log("pwned")</script>'
           '<img src=x onerror="console.log(\'pwned\');window.__pwned=1">')


@pytest.fixture(scope="module")
def driver():
    browser = chrome()
    yield browser
    browser.quit()


@pytest.fixture
def runs(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    made = Runs(str(runs_dir))
    yield made
    made.close()


@pytest.fixture
def server(runs):
    started = start_view(runs.runs_dir)
    yield started
    started.stop()


def css(driver, selector):
    return driver.find_elements("css selector", selector)


def status_cell(driver, run):
    cells = css(driver, f'tr[data-id="{run.id}"] td[data-col="status"]')
    return cells[0].text if cells else None


def mark_page(driver):
    driver.execute_script("window.__notReloaded = true")


def not_reloaded(driver):
    return driver.execute_script("return window.__notReloaded === true")


def wait_live(driver, predicate, what):
    """`predicate` holds within LIVE_SECONDS of now, without a reload; the time it took."""
    start = time.monotonic()
    wait_until(driver, predicate, LIVE_SECONDS, what)
    assert not_reloaded(driver), "the page was reloaded"
    return time.monotonic() - start


def open_page(driver, url, ready, *, live=True):
    driver.get(url)
    wait_until(driver, lambda d: css(d, ready), 10, ready)
    if live:
        wait_until(driver, lambda d: css(d, "#live.on"), 10, "the event stream")
    console_lines(driver)  # start the console afresh
    mark_page(driver)


def test_status_moves_queued_running_completed_on_an_open_page(driver, server, runs):
    older = runs.completed(config={"lr": 0.1}, metrics={"loss": 0.5})
    run = runs.make(config={"lr": 0.2}, label="live")
    open_page(driver, server.url, f'tr[data-id="{run.id}"]')
    assert status_cell(driver, run) == "queued" and status_cell(driver, older) == "completed"

    runs.start(run)
    took_running = wait_live(driver, lambda d: status_cell(d, run) == "running", "running")
    row = css(driver, f'tr[data-id="{run.id}"]')[0]
    assert row.find_element("css selector", '[data-col="host"]').text == runs.host
    assert row.find_element("css selector", '[data-col="worker"]').text == runs.node

    runs.finish(run, metrics={"loss": 0.25})
    took_completed = wait_live(driver, lambda d: status_cell(d, run) == "completed", "completed")
    assert row.find_element("css selector", '[data-col="reason"]').text == "completed"
    assert max(took_running, took_completed) < LIVE_SECONDS

    new = runs.make(label="newcomer")  # a run added: the table gets it without a reload
    wait_live(driver, lambda d: status_cell(d, new) == "queued", "the new run's row")
    assert [e.get_attribute("data-id") for e in css(driver, "#runs tbody tr")][0] == new.id
    assert not [line for line in console_lines(driver) if "SEVERE" in line]


def test_output_of_a_running_run_grows_on_its_page(driver, server, runs):
    run = runs.start(runs.make())
    runs.write_output(run, "".join(f"epoch {i}\n" for i in range(20000)))  # 200 kB
    open_page(driver, f"{server.url}runs/{run.id}", "#output")
    wait_until(driver, lambda d: "epoch 19999" in d.find_element("id", "output").text, 5,
               "the last lines")
    shown = driver.find_element("id", "output").text
    assert not shown.startswith("epoch 0\n") and len(shown) < 70_000  # the tail, not all
    assert driver.find_element("id", "status").text == "running"
    for n in range(3):
        runs.write_output(run, f"step {n} written\n")
        wait_live(driver, lambda d, n=n: f"step {n} written" in d.find_element("id", "output").text,
                  f"line {n}")
    runs.finish(run, metrics={"loss": 0.1})
    wait_live(driver, lambda d: d.find_element("id", "status").text == "completed", "completed")
    wait_until(driver, lambda d: "loss" in d.find_element("id", "metrics").text, 2, "metrics")


def test_compare_plots_three_runs(driver, server, runs):
    made = [runs.completed(config={"lr": lr, "optimizer": opt}, metrics={"loss": loss})
            for lr, opt, loss in ((0.1, "sgd", 0.9), (0.01, "adam", 0.4), (0.001, "adam", 0.6))]
    query = "&".join(f"run={r.id}" for r in made)
    open_page(driver, f"{server.url}compare?{query}", "#compare", live=False)
    wait_until(driver, lambda d: css(d, "#scatter[data-plotted]"), 10, "the scatter plot")
    wait_until(driver, lambda d: css(d, "#parallel[data-plotted]"), 10, "parallel coordinates")
    assert len(css(driver, "#scatter .scatterlayer .point")) == 3
    assert len(css(driver, "#parallel .scatterlayer .trace")) == 3
    ticks = [e.text for e in css(driver, "#parallel .xtick text")]
    assert ticks == ["lr", "optimizer", "loss"]
    assert [e.text for e in css(driver, "#compare tbody tr td:first-child")] == \
        [r.name for r in made]
    csv_link = driver.find_element("id", "csv").get_attribute("href")
    assert "/compare.csv?" in csv_link and all(r.id in csv_link for r in made)
    assert not [line for line in console_lines(driver) if "SEVERE" in line or "CSP" in line]


def test_hostile_text_shows_as_text_and_runs_no_script(driver, server, runs):
    run = runs.start(runs.make(label=HOSTILE, config={HOSTILE: HOSTILE}))
    runs.write_output(run, f"{HOSTILE}\n<b>bold?</b>\n")
    with open(os.path.join(run.run_dir, "<img src=x onerror=alert(1)>.txt"), "w") as f:
        f.write(HOSTILE)
    open_page(driver, server.url, f'tr[data-id="{run.id}"]')
    label = css(driver, f'tr[data-id="{run.id}"] td[data-col="label"]')[0]
    assert label.text == HOSTILE
    assert driver.execute_script("return arguments[0].children.length", label) == 0

    driver.get(f"{server.url}runs/{run.id}")
    wait_until(driver, lambda d: "bold?" in d.find_element("id", "output").text, 5, "output")
    output = driver.find_element("id", "output")
    assert output.text == f"{HOSTILE}\n<b>bold?</b>"
    assert driver.execute_script("return arguments[0].querySelectorAll('*').length", output) == 0
    assert driver.find_element("id", "label").text == HOSTILE
    assert HOSTILE in driver.find_element("id", "flags").text
    assert "<img src=x onerror=alert(1)>.txt" in driver.find_element("id", "files").text
    assert not css(driver, "main img, main script, main b")

    runs.write_output(run, f"{HOSTILE} later\n")  # a line added live goes in as text too
    wait_until(driver, lambda d: "later" in d.find_element("id", "output").text, 3, "live line")
    assert not css(driver, "main img, main script")

    other = runs.completed(config={"lr": 1}, metrics={HOSTILE: 1.0})
    driver.get(f"{server.url}compare?run={run.id}&run={other.id}")
    wait_until(driver, lambda d: css(d, "#parallel[data-plotted]"), 10, "plots")
    assert HOSTILE in driver.find_element("id", "compare").text
    assert not css(driver, "main img[src=x], main script")
    assert driver.execute_script("return window.__pwned === undefined")
    logged = console_lines(driver)
    assert not [line for line in logged if "pwned" in line or "CSP" in line], logged


def test_traversal_and_a_symlinked_file_are_refused(driver, server, runs, tmp_path):
    run = runs.make()
    secret = tmp_path / "secret.txt"
    secret.write_text("the secret\n")
    os.symlink(secret, os.path.join(run.run_dir, "linked.txt"))
    with open(os.path.join(run.run_dir, "own.txt"), "w") as f:
        f.write("own file\n")
    driver.get(f"{server.url}runs/{run.id}")
    files = driver.find_element("id", "files")
    assert "linked.txt" in files.text and "link out of the run's dir" in files.text
    assert [a.text for a in files.find_elements("css selector", "a")] == ["own.txt"]
    files.find_element("link text", "own.txt").click()
    wait_until(driver, lambda d: css(d, "#file-text"), 5, "the file")
    assert driver.find_element("id", "file-text").text == "own file"

    for path in ("linked.txt", "../../secret.txt", "%2e%2e/%2e%2e/secret.txt", "/etc/passwd",
                 f"../{run.id}.meta/opref"):
        driver.get(f"{server.url}runs/{run.id}/file?path={path}")
        body = driver.find_element("tag name", "body").text
        assert "the secret" not in body and "root:" not in body
        assert driver.find_element("tag name", "h1").text in ("403", "404"), path
        assert "refused" in driver.find_element("id", "error").text or "no file" in body


def test_actions_are_refused_without_the_token(driver, runs):
    run = runs.make()
    read_only = start_view(runs.runs_dir)
    try:
        driver.get(f"{read_only.url}runs/{run.id}")
        wait_until(driver, lambda d: css(d, "#status"), 5, "the run page")
        assert not css(driver, "#cancel")
        status = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            f"Gage.act('/api/runs/{run.id}/cancel').then(r => done(r.status));")
        assert status == 403
    finally:
        read_only.stop()

    server = start_view(runs.runs_dir, "--allow-actions")
    try:
        driver.get(f"{server.url}runs/{run.id}")  # no token: no page, no actions token
        assert driver.find_element("tag name", "h1").text == "403"
        assert not css(driver, 'meta[name="gage-actions"]')
        status = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            f"fetch('/api/runs/{run.id}/cancel', {{method: 'POST', headers: "
            "{'X-Gage-Actions': 'guess'}}).then(r => done(r.status));")
        assert status == 403
        assert not os.path.getsize(os.path.join(run.meta_dir, "queue", "cancel"))

        driver.get(f"{server.url}runs/{run.id}?token={server.token}")
        wait_until(driver, lambda d: css(d, "#cancel"), 5, "the cancel button")
        assert "token" not in driver.current_url  # the token left the URL for a cookie
        mark_page(driver)
        forged = driver.execute_async_script(  # the page's own origin, but a wrong token
            "const done = arguments[arguments.length - 1];"
            f"fetch('/api/runs/{run.id}/cancel', {{method: 'POST', headers: "
            "{'X-Gage-Actions': 'guess'}}).then(r => done(r.status));")
        assert forged == 403
        driver.find_element("id", "cancel").click()
        wait_until(driver, lambda d: d.find_element("id", "action-result").text, 5, "cancel")
        assert driver.find_element("id", "action-result").text == "cancel requested"
        wait_live(driver, lambda d: "requested" in d.find_element("id", "reason").text,
                  "the cancel request in the reason")
        assert os.path.getsize(os.path.join(run.meta_dir, "queue", "cancel"))
    finally:
        server.stop()
