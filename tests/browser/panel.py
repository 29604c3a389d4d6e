#!/usr/bin/env python3
"""The logging panel and the dashboard of `kasm-db serve` in a real browser (Playwright driving
Debian's Chromium), run by tests/panel.rs against a real serve with records already ingested.

Checks, in order: the sign-in form (a wrong token gets 401, the right one an HttpOnly
SameSite=Strict cookie script cannot read, the token in no URL and no page), the security
headers (a CSP without 'unsafe-inline', nosniff, no-referrer; no CSP violation reported by
the browser), hostile messages shown as text (`window.pwned` stays undefined), search with `q`,
a record's data and context, filtering by clicking a facet, the filters in the URL (a link
reproduces the view), export links, live tail with pause and resume (records ingested here
while paused appear after resume, each once), and the dashboard. Screenshots at 1280 px and on
a phone go to --out. Exits 0 and prints "panel.py: all checks passed" only if every check held.
"""

import argparse
import json
import sys
import time
import urllib.request
import uuid

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 20000


def step(msg):
    print("panel.py: " + msg, flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def ingest(base, token, records):
    """POST records (NDJSON) to serve's ingest endpoint with the ingest token; 200 = durable."""
    body = "".join(json.dumps(r) + "\n" for r in records).encode()
    req = urllib.request.Request(base + "/api/v1/logs", data=body, method="POST",
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(req, timeout=30) as r:
        check(r.status == 200, "ingest answered %d" % r.status)
        return json.load(r)


def check_headers(resp, what):
    h = {k.lower(): v for k, v in resp.headers.items()}
    csp = h.get("content-security-policy", "")
    check(csp, "%s: no Content-Security-Policy" % what)
    check("'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, "%s: CSP allows inline: %s" % (what, csp))
    check("script-src 'self'" in csp and "default-src 'none'" in csp, "%s: CSP %s" % (what, csp))
    check(h.get("x-content-type-options") == "nosniff", "%s: no nosniff" % what)
    check(h.get("referrer-policy") == "no-referrer", "%s: no Referrer-Policy" % what)


def rows(page):
    return page.locator("#records tbody tr[data-log-id]")


def wait_rows(page, pred, what):
    """Wait until pred(list of row texts by column) holds."""
    deadline = time.time() + TIMEOUT_MS / 1000
    last = None
    while time.time() < deadline:
        last = page.eval_on_selector_all(
            "#records tbody tr[data-log-id]",
            "trs => trs.map(tr => ({id: tr.getAttribute('data-log-id'),"
            " host: tr.querySelector('.c-host').textContent, app: tr.querySelector('.c-app').textContent,"
            " msg: tr.querySelector('.c-msg').textContent}))")
        if pred(last):
            return last
        page.wait_for_timeout(100)
    raise AssertionError("timed out waiting for %s; rows: %s" % (what, json.dumps(last)[:2000]))


def no_pwn(page, where):
    check(page.evaluate("typeof window.pwned") == "undefined", "%s: window.pwned was set" % where)
    check(page.evaluate("document.querySelectorAll('img').length") == 0, "%s: an <img> was created" % where)
    check(page.evaluate("document.querySelectorAll('#records script, dialog script').length") == 0,
          "%s: a <script> element from data" % where)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--token-file", required=True, help="file holding the read token")
    ap.add_argument("--ingest-token-file", required=True)
    a = ap.parse_args()
    base = a.base.rstrip("/")
    token = open(a.token_file).read().strip()
    ingest_token = open(a.ingest_token_file).read().strip()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport=WIDE)
        ctx.set_default_timeout(TIMEOUT_MS)
        page = ctx.new_page()
        problems = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append("page error: %s" % e))
        try:
            run(page, ctx, base, token, ingest_token, a.out, problems)
        except Exception:
            try:
                page.screenshot(path=a.out + "/failure.png", full_page=True)
                step("failure screenshot: " + a.out + "/failure.png")
            except Exception:
                pass
            raise
        finally:
            browser.close()
    step("all checks passed")


def run(page, ctx, base, token, ingest_token, out, problems):
    # ---- Sign-in ----
    start_url = base + "/logs?since=1h&limit=100"
    resp = page.goto(start_url)
    check(resp.status == 200, "GET /logs signed out: %d" % resp.status)
    check_headers(resp, "GET /logs (sign-in form)")
    check(page.locator("input[name=token]").count() == 1, "no input[name=token] on the sign-in form")
    page.screenshot(path=out + "/signin-1280.png")
    step("sign-in form shown, headers present")

    page.fill("input[name=token]", "not-the-token")
    with page.expect_response(lambda r: "/logs/signin" in r.url) as wrong:
        page.click("button[type=submit]")
    check(wrong.value.status == 401, "wrong token: %d, want 401" % wrong.value.status)
    page.wait_for_selector(".signin .error")
    check(page.locator("input[name=token]").count() == 1, "the form again after a wrong token")
    step("a wrong token gets 401 and the form again")

    page.fill("input[name=token]", token)
    with page.expect_navigation():
        page.click("button[type=submit]")
    check("/logs" in page.url and "since=1h" in page.url, "after sign-in the filters are kept: " + page.url)
    check(token not in page.url, "the token is in the URL")
    page.wait_for_selector("#records tbody tr[data-log-id]")
    check(token not in page.content(), "the token is in the page")
    cookies = ctx.cookies()
    check(len(cookies) >= 1, "no session cookie")
    for c in cookies:
        check(c["httpOnly"], "cookie %s is not HttpOnly" % c["name"])
        check(c["sameSite"] == "Strict", "cookie %s SameSite=%s" % (c["name"], c["sameSite"]))
        check(token not in c["value"], "the cookie holds the token itself")
    check(page.evaluate("document.cookie") == "", "script can read a cookie: " + page.evaluate("document.cookie"))
    step("signed in: HttpOnly SameSite=Strict cookie, token in no URL and no page")

    # ---- Headers of the page, its assets and the API ----
    for path in ["/logs", "/", "/assets/panel.js", "/api/v1/logs?limit=1", "/api/v1/dashboard"]:
        r = page.request.get(base + path)
        check(r.status == 200, "GET %s: %d" % (path, r.status))
        check_headers(r, "GET " + path)
    step("CSP, nosniff and no-referrer on pages, assets and API")

    # ---- Hostile records are text ----
    got = wait_rows(page, lambda rs: any(r["msg"] == "<script>window.pwned=1</script>" for r in rs)
                    and any(r["msg"] == '<img src=x onerror="window.pwned=1">' for r in rs), "hostile messages")
    check(any(r["host"] == '<img src=x onerror="window.pwned=1">' for r in got), "hostile host shown as text")
    check(page.locator("button.facet-value[data-value='<img src=x onerror=\"window.pwned=1\">']").count() == 1,
          "hostile facet value shown as text")
    no_pwn(page, "/logs")
    page.screenshot(path=out + "/logs-1280.png")
    step("hostile messages shown as text, window.pwned undefined")

    # ---- Search with q ----
    page.fill("input[name=q]", "needle-7f3a")
    page.press("input[name=q]", "Enter")
    got = wait_rows(page, lambda rs: len(rs) == 1 and "needle-7f3a" in rs[0]["msg"], "the search result")
    check("q=needle-7f3a" in page.url, "q not in the URL: " + page.url)
    step("search: q=needle-7f3a finds the one record")
    page.fill("input[name=q]", "")
    page.fill("input[name=where]", "extra_field=deep-value-42")
    page.press("input[name=where]", "Enter")
    wait_rows(page, lambda rs: len(rs) == 1 and "needle-7f3a" in rs[0]["msg"], "the data field filter")
    check("where=extra_field%3Ddeep-value-42" in page.url, "where not in the URL: " + page.url)
    step("data field: where=extra_field=deep-value-42 finds it too")

    # ---- A record's data and context ----
    rows(page).first.click()
    page.wait_for_selector("#detail[open]")
    page.wait_for_selector("#detail-context tr.current")
    data = page.text_content("#detail-data")
    check("deep-value-42" in data and "needle-7f3a" in data, "the record's whole data: " + data)
    around = page.locator("#detail-context tr.before, #detail-context tr.after").count()
    check(around >= 2, "context: %d records around the record" % around)
    page.screenshot(path=out + "/record-1280.png")
    page.click("#detail-close")
    step("record opened: data and %d records of context" % around)

    # ---- Export links carry the filters ----
    href = page.get_attribute("#export-ndjson", "href")
    check("format=ndjson" in href and "where=extra_field%3Ddeep-value-42" in href, "export link: " + href)
    r = page.request.get(base + href)
    check(r.status == 200, "export: %d" % r.status)
    lines = [l for l in r.text().splitlines() if l.strip()]
    check(len(lines) == 1 and "needle-7f3a" in lines[0], "export of what is shown: %r" % lines[:3])
    step("export NDJSON of the view: the one record")

    # ---- Facet click ----
    page.click("#reset")
    wait_rows(page, lambda rs: len(rs) > 5, "all records again")
    page.click("button.facet-value[data-facet=host][data-value='kasm-web-2']")
    got = wait_rows(page, lambda rs: rs and all(r["host"] == "kasm-web-2" for r in rs), "host facet filter")
    check("host=kasm-web-2" in page.url, "host not in the URL: " + page.url)
    check(page.input_value("input[name=host]") == "kasm-web-2", "host field not set by the facet")
    step("facet click: %d records of host kasm-web-2" % len(got))

    # ---- A link reproduces the view ----
    link = page.url
    other = ctx.new_page()
    other.goto(link)
    wait_rows(other, lambda rs: rs and all(r["host"] == "kasm-web-2" for r in rs), "the view from its link")
    check(other.input_value("input[name=host]") == "kasm-web-2", "the link did not restore the filter")
    other.close()
    step("the page's URL reproduces the view")

    # ---- Paging to older records ----
    page.goto(base + "/logs?since=1h&limit=20")
    first = wait_rows(page, lambda rs: len(rs) == 20, "a first page of 20")
    page.click("#older")
    both = wait_rows(page, lambda rs: len(rs) == 40, "a second page of 20")
    ids = [r["id"] for r in both]
    check(len(set(ids)) == 40 and ids[:20] == [r["id"] for r in first], "older pages: no overlap, appended")
    step("older records: a second page of 20 below the first, no overlap")

    # ---- A histogram bar zooms to its time range (start/end in the URL) ----
    page.locator("#histogram-chart svg.chart g.bar.clickable:has(rect[fill])").last.click(force=True)
    page.wait_for_function("new URLSearchParams(location.search).has('until')")
    params = page.evaluate("Object.fromEntries(new URLSearchParams(location.search))")
    check(params["since"].endswith("Z") and params["until"].endswith("Z"), "zoomed range: %r" % params)
    check(page.input_value("select[name=range]") == "custom", "the range select shows start/end")
    wait_rows(page, lambda rs: len(rs) > 0, "records of the zoomed range")
    step("a histogram bar zooms to %s .. %s" % (params["since"], params["until"]))

    # ---- Live tail, pause, resume ----
    page.goto(base + "/logs?since=1h&limit=100&live=1")
    page.wait_for_selector("#live-state[data-state=live]")
    tag = uuid.uuid4().hex[:8]
    ingest(base, ingest_token, [{"levelname": "INFO", "message": "live-one-" + tag, "host": "kasm-web-1",
                                 "application": "kasm_api"}])
    wait_rows(page, lambda rs: sum(r["msg"] == "live-one-" + tag for r in rs) == 1, "the live record")
    step("live: a record ingested now appears")

    page.click("#pause")
    page.wait_for_selector("#live-state[data-state=paused]")
    for i in range(3):  # three commits, so three distinct times
        ingest(base, ingest_token, [{"levelname": "WARNING", "message": "while-paused-%d-%s" % (i, tag),
                                     "host": "kasm-web-1", "application": "kasm_api"}])
    page.wait_for_timeout(1500)
    shown = wait_rows(page, lambda rs: True, "rows")
    check(not any(r["msg"].startswith("while-paused-") for r in shown), "a record appeared while paused")
    page.click("#pause")
    got = wait_rows(page, lambda rs: all(sum(r["msg"] == "while-paused-%d-%s" % (i, tag) for r in rs) == 1
                                         for i in range(3)), "the records ingested while paused")
    check(sum(r["msg"] == "live-one-" + tag for r in got) == 1, "the live record shown more than once")
    order = [r["msg"] for r in got if tag in r["msg"]]
    check(order == ["while-paused-2-" + tag, "while-paused-1-" + tag, "while-paused-0-" + tag, "live-one-" + tag],
          "newest first, each once: %r" % order)
    no_pwn(page, "/logs?live=1")
    page.screenshot(path=out + "/live-1280.png")
    step("pause holds records back; resume shows each exactly once, in order")

    # ---- Dashboard ----
    page.goto(base + "/")
    page.wait_for_selector("body[data-loaded=yes]")
    check(page.locator("#by-level svg.chart .bar rect").count() > 0, "no bars by level")
    check(page.locator("#by-app svg.chart .bar rect").count() > 0, "no bars by application")
    check("kasm-agent-1" in page.text_content("#errors"), "errors per host: " + page.text_content("#errors"))
    check(page.locator("#metrics [data-metric=sessions_provisioned]").count() == 1,
          "no sessions_provisioned metric: " + page.text_content("#metrics"))
    check(page.text_content("#size-db").strip() not in ("", "–"), "no database size")
    check("backup" in page.text_content("#backups").lower(), "backups: " + page.text_content("#backups"))
    no_pwn(page, "/")
    page.screenshot(path=out + "/dashboard-1280.png", full_page=True)
    step("dashboard: volume by level and application, errors per host, metrics, size, backups")

    # ---- Phone ----
    phone = ctx.browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    phone.add_cookies(ctx.cookies())
    pp = phone.new_page()
    pp.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pp.goto(base + "/logs?since=1h&limit=50")
    wait_rows(pp, lambda rs: len(rs) > 5, "rows on a phone")
    width = pp.evaluate("document.documentElement.scrollWidth")
    check(width <= PHONE["width"], "the panel scrolls sideways on a phone: %d px" % width)
    pp.screenshot(path=out + "/logs-phone.png")
    pp.goto(base + "/")
    pp.wait_for_selector("body[data-loaded=yes]")
    width = pp.evaluate("document.documentElement.scrollWidth")
    check(width <= PHONE["width"], "the dashboard scrolls sideways on a phone: %d px" % width)
    pp.screenshot(path=out + "/dashboard-phone.png", full_page=True)
    phone.close()
    step("phone viewport: no sideways scrolling")

    # ---- Sign-out ----
    page.goto(base + "/logs")
    with page.expect_navigation():
        page.click(".signout button")
    check(page.locator("input[name=token]").count() == 1, "not signed out")
    r = page.request.get(base + "/api/v1/logs?limit=1")
    check(r.status == 401, "the API after sign-out: %d" % r.status)
    step("signed out")

    csp = [m for m in problems if "Content Security Policy" in m or "Refused to" in m]
    check(not csp, "CSP violations: %r" % csp)
    # The browser reports the wrong sign-in's 401 itself; anything else is a fault of the pages.
    others = [m for m in problems if "status of 401" not in m]
    check(not others, "console errors: %r" % others)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("panel.py: FAILED: %s" % e, flush=True)
        sys.exit(1)
