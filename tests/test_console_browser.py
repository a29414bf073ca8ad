"""The console in a real browser (Debian's Chromium driven by Playwright) over a real `cfa run`.

One session per module whose market agent asks for a γ change that waits for approval (so a
person decides) and one `cfa console`. In the browser: the live table changes in place without
a reload; an approval given on the page changes the parameter (a ``param_changes`` row, and the
page shows the new γ); a halt clicked on the page cancels the market's resting orders within a
second (from the click to the cancel rows in the store); a POST without the cookie, and a form
forged on another origin, are refused; the run's charts zoom on time and their decision
markers open the decision. Screenshots go to ``docs/img/console-*.png`` with
``CFA_SCREENSHOTS=1``, else to the test's temporary directory.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from live_session import approval_script, start_run, stop, wait_for, wait_quoting
from store_backends import rows
from test_console import free_port, start_console, wait_up

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "/usr/bin/chromium is absent (install Debian's `chromium`; .ci/run does)",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"


@dataclass
class Live:
    db: Path
    base: str
    token: str
    run_id: str
    market: str
    browser: Browser
    shots: Path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("console-browser")
    shots = DOCS_IMG if os.environ.get("CFA_SCREENSHOTS") == "1" else tmp
    shots.mkdir(parents=True, exist_ok=True)
    db = tmp / "live.db"
    run = start_run(db, tmp, markets=1, reasoner=approval_script(tmp / "script.jsonl"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        wait_quoting(db)
        port = free_port()
        token = secrets.token_urlsafe(24)
        proc, _, err = start_console(db, tmp, port, "--token", token, "--operator", "eve")
        base = f"http://127.0.0.1:{port}"
        wait_up(base, proc, err)
        run_id = str(rows(db, "select run_id from runs where kind = 'start'")[0][0])
        market = str(rows(db, "select market from param_changes where market != ''")[0][0])
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                yield Live(db, base, token, run_id, market, browser, shots)
            finally:
                browser.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        stop(run)


def logged_in(live: Live, errors: list[str] | None = None) -> Page:
    """A page of a fresh context, logged in through the login URL; its script errors and
    console errors (e.g. a CSP violation) are appended to ``errors``."""
    page = live.browser.new_context(viewport=VIEWPORT).new_page()
    if errors is not None:
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{live.base}/login?token={live.token}")
    assert page.url == f"{live.base}/", "the token URL is left at once"
    return page


def test_the_live_table_updates_in_place(live: Live) -> None:
    errors: list[str] = []
    page = logged_in(live, errors)
    page.goto(f"{live.base}/runs/{live.run_id}")
    page.evaluate("window.__noReload = 1")
    row = page.locator(f'#markets tr[data-market="{live.market}"]')
    first = page.text_content("#seq")
    before = {f: row.locator(f'[data-f="{f}"]').text_content() for f in ("fills", "our_bid")}
    page.wait_for_function(
        "s => document.getElementById('seq').textContent !== s", arg=first, timeout=10_000
    )
    assert page.evaluate("window.__noReload") == 1, "the page was not reloaded"
    page.wait_for_function(
        "() => document.getElementById('age').textContent.startsWith('updated')", timeout=5_000
    )
    # a cell of the market's row changes too (fills or our quote), still without reload
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = {f: row.locator(f'[data-f="{f}"]').text_content() for f in before}
        if now != before:
            break
        time.sleep(0.2)
    assert now != before, f"no cell of {live.market} changed in 20 s: {now}"
    assert page.evaluate("window.__noReload") == 1
    page.screenshot(path=str(live.shots / "console-live.png"))
    assert not errors, errors


def test_an_approval_in_the_browser_changes_gamma(live: Live) -> None:
    page = logged_in(live)
    page.goto(f"{live.base}/runs/{live.run_id}")
    pending = page.locator("#pending tr").first
    pending.wait_for(timeout=60_000)  # the script asks; the page's script inserts the row
    assert "gamma" in pending.inner_text()
    pending.locator("input.reason").fill("looks right")
    page.locator("#approvals").scroll_into_view_if_needed()
    page.screenshot(path=str(live.shots / "console-approval.png"))
    pending.locator("button.approve").click()
    page.wait_for_url(f"{live.base}/runs/{live.run_id}")
    assert "by eve: applied" in page.text_content("#flash")
    wait_for(
        lambda: rows(live.db, "select 1 from param_changes where param = 'gamma' and new = 0.14"),
        10,
        "the approved γ in param_changes",
    )
    decided = rows(
        live.db, "select actor from governance_actions where action = 'approval_decided'"
    )
    assert ("person:eve",) in decided
    cell = page.locator(f'#markets tr[data-market="{live.market}"] [data-f="gamma"]')
    page.wait_for_function(
        "el => el.textContent === '0.14'", arg=cell.element_handle(), timeout=5_000
    )
    # the table links the market's last decision
    link = page.locator(f'#markets tr[data-market="{live.market}"] [data-f="last_decision"] a')
    assert (link.get_attribute("href") or "").startswith("/decisions/")
    # the decision that asked for the change, found through the traces filters
    page.goto(f"{live.base}/runs/{live.run_id}/traces?outcome=pending_approval&outcome=approved")
    page.locator('table.grid tbody tr td a[href^="/decisions/"]').last.click()
    page.wait_for_url("**/decisions/*")
    text = page.content()
    assert "Tool calls and validation" in text and "set_gamma" in text
    page.screenshot(path=str(live.shots / "console-decision.png"))


def test_the_run_charts_zoom_on_time_and_link_decisions(live: Live) -> None:
    errors: list[str] = []
    page = logged_in(live, errors)
    page.goto(f"{live.base}/runs/{live.run_id}/plots")
    charts = page.locator("#charts")
    page.wait_for_selector('#charts[data-ready="1"]', timeout=20_000)
    assert page.locator("#charts svg.chart").count() == 6  # one market, six charts
    full = [float(x) for x in (charts.get_attribute("data-window") or "").split(",")]
    first = page.locator("#charts svg.chart").first
    labels = first.locator("text.xl").all_text_contents()
    box = first.bounding_box()
    assert box is not None
    before = charts.get_attribute("data-window")
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.7, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.9, y, steps=5)
    page.mouse.up()
    page.wait_for_function(
        "w => document.getElementById('charts').dataset.window !== w", arg=before, timeout=5_000
    )
    zoomed = [float(x) for x in (charts.get_attribute("data-window") or "").split(",")]
    assert full[0] < zoomed[0] < zoomed[1] < full[1]
    assert zoomed[1] - zoomed[0] < 0.3 * (full[1] - full[0])
    assert first.locator("text.xl").all_text_contents() != labels, "the time axis follows"
    assert "#t=" in page.url, "the zoomed window is in the URL"
    # every chart shows the same window: the last one's axis matches the first's
    last = page.locator("#charts svg.chart").last
    assert (
        last.locator("text.xl").all_text_contents() == first.locator("text.xl").all_text_contents()
    )
    page.screenshot(path=str(live.shots / "console-plots.png"), full_page=False)
    first.dblclick()
    page.wait_for_function(
        "w => document.getElementById('charts').dataset.window === w",
        arg=f"{full[0]:.3f},{full[1]:.3f}",
        timeout=5_000,
    )
    # a decision marker on the γ chart opens that decision (two at one time: the top one)
    marker = page.locator("#charts a.decision-link").first
    assert (marker.get_attribute("href") or "").startswith("/decisions/")
    marker.locator("rect.hit").scroll_into_view_if_needed()
    hit = marker.locator("rect.hit").bounding_box()
    assert hit is not None
    page.mouse.click(hit["x"] + hit["width"] / 2, hit["y"] + hit["height"] / 2)
    page.wait_for_url(f"{live.base}/decisions/*")
    assert "Tool calls and validation" in page.content()
    assert not errors, errors


def test_a_halt_in_the_browser_cancels_orders_within_a_second(live: Live) -> None:
    page = logged_in(live)
    page.goto(f"{live.base}/runs/{live.run_id}")
    wait_for(
        lambda: (
            rows(
                live.db,
                "select count(*) from orders o where action = 'place' and not exists (select 1"
                " from orders c where c.order_id = o.order_id and c.action = 'cancel')",
            )[0][0]
            > 0
        ),
        20,
        "resting orders",
    )
    top = rows(live.db, "select max(seq) from orders")[0][0]
    box = page.locator(f'details.market-controls[data-market="{live.market}"]')
    box.locator("summary").click()
    form = box.locator("form.state-control")
    form.locator("input.reason").fill("kill switch test")
    t0 = time.monotonic()
    form.locator("button.halt").click(no_wait_after=True)

    def cancelled() -> Any:
        return rows(
            live.db,
            "select count(*) from orders where seq > ? and action = 'cancel' and reason = 'halted'",
            top,
        )[0][0]

    deadline = t0 + 5
    while time.monotonic() < deadline and not cancelled():
        time.sleep(0.01)
    elapsed = time.monotonic() - t0
    print(f"halt: click to the resting orders cancelled in the store in {elapsed * 1000:.0f} ms")
    assert cancelled(), "the halt cancelled nothing"
    assert elapsed < 1.0
    page.wait_for_url(f"{live.base}/runs/{live.run_id}")
    assert "halt on" in page.text_content("#flash")
    state = page.locator(f'#markets tr[data-market="{live.market}"] [data-f="state"]')
    page.wait_for_function(
        "el => el.textContent === 'HALTED'", arg=state.element_handle(), timeout=3_000
    )


def test_posts_without_the_token_or_from_another_origin_are_refused(live: Live) -> None:
    before = rows(live.db, "select count(*) from governance_actions")[0][0]
    halt = {"tool": "halt", "market": "*", "operator": "mallory", "reason": "forged"}
    # A context without the cookie: 401.
    anon = live.browser.new_context()
    r = anon.request.post(f"{live.base}/actions", form={**halt, "run_id": live.run_id})
    assert r.status == 401
    r = anon.request.post(f"{live.base}/api/actions", data={"tool": "halt"})
    assert r.status == 401
    anon.close()
    # A form on another origin (same site, another port: the strict cookie goes along),
    # submitted by the logged-in browser: refused by the Origin check.
    page = logged_in(live)
    other = f"http://127.0.0.1:{free_port()}"
    fields = "".join(
        f'<input type="hidden" name="{k}" value="{v}">'
        for k, v in {**halt, "run_id": live.run_id, "csrf": "0" * 64}.items()
    )
    html = (
        f'<!doctype html><form method="post" action="{live.base}/actions">{fields}'
        '<button id="go" type="submit">win a prize</button></form>'
    )
    page.route(f"{other}/forged", lambda route: route.fulfill(body=html, content_type="text/html"))
    page.goto(f"{other}/forged")
    with page.expect_response(f"{live.base}/actions") as got:
        page.click("#go")
    assert got.value.status == 403
    assert "not this console" in page.content()
    assert rows(live.db, "select count(*) from governance_actions")[0][0] == before
