"""The web UI in headless Chromium (Debian's, driven by Playwright) against a real clownd.

Hooks are the ones documented in docs/web-ui.md. Screenshots go to test-artifacts/screenshots/.
"""

import datetime as dt
import os
import re
import shutil
import tempfile
import time
import urllib.parse

from tests.browser.conftest import TOKEN
from tests.clownd import wait_for
from tests.fakes.transcripts import write_claude_corpus

PAGES = ("overview", "profiles", "agents", "terminals", "sessions", "usage", "proxies", "logs")
TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
SECRET = "sk-browser-secret-5f3a9c1e7b"
PROMPT = re.compile(r"[$#]$")  # bash's default prompt: the user is root in some test machines
ECHO = re.compile(r"[$#] echo hi$")


def api(daemon, method, path, body=None):
    """``data`` of a successful clown-family call."""
    status, reply = daemon.request(method, path, body=body, headers=daemon.auth_headers)
    assert status == 200 and reply["success"] is True, (method, path, status, reply)
    return reply["data"]


def make_shell_profile(daemon, alias):
    api(daemon, "POST", "/api/profiles", {"alias": alias, "agent_id": "shell", "provider_id": "self"})
    return alias


def goto(page, daemon, route):
    page.goto(f"{daemon.url}/#/{route}")
    page.wait_for_selector(f"#main[data-view={route.split('/')[0]}]")


def status_of(page, selector):
    return page.get_attribute(f"{selector} [data-status]", "data-status")


def screen_lines(page, session_id):
    """The text of xterm's rows in the pane of ``session_id``, trailing blanks stripped."""
    return page.evaluate("""(id) => [...document.querySelectorAll(
        `.terminal-view[data-session-id="${id}"] .xterm-rows > div`)].map(
        (row) => row.textContent.replace(/\\u00a0/g, " ").replace(/\\s+$/, ""))""", session_id)


def wait_screen(page, session_id, predicate, message, timeout=10):
    """Poll the rows until ``predicate(lines)`` is truthy; returns its value."""
    found = []

    def check():
        found[:] = [screen_lines(page, session_id)]
        return predicate(found[0])
    try:
        return wait_for(check, timeout=timeout, interval=0.05, message=message)
    except AssertionError as error:
        raise AssertionError(f"{error}; screen: {found and found[0]}") from None


def unlabelled_controls(page):
    """Form controls in #main with no accessible name (label, aria-label(ledby), or button text)."""
    return page.evaluate("""() => [...document.querySelectorAll(
        '#main input, #main select, #main textarea, #main button, #main a.button')].filter((el) => {
          if (el.type === 'hidden') return false;
          if (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')) return false;
          if (el.labels && el.labels.length) return false;
          if ((el.tagName === 'BUTTON' || el.tagName === 'A') && el.textContent.trim()) return false;
          return true;
        }).map((el) => el.outerHTML.slice(0, 120))""")


# -- overview -------------------------------------------------------------------------------


def test_overview_shows_daemon_status_uptime_and_running_programs(page, ui_daemon):
    daemon = api(ui_daemon, "GET", "/api/daemon/status")
    goto(page, ui_daemon, "overview")
    page.wait_for_selector("#overview-programs tr[data-program=events]")
    assert status_of(page, "#overview-status") == "running" == daemon["status"]
    uptime = int(page.get_attribute("#overview-uptime", "data-value"))
    assert daemon["uptime_secs"] <= uptime <= daemon["uptime_secs"] + 30
    assert re.fullmatch(r"(\d+d )?(\d+h )?(\d+m )?\d+s|\d+[dhm]( \d+[hms])*", page.inner_text("#overview-uptime"))
    assert page.get_attribute("#overview-pid", "data-value") == str(daemon["pid"])
    assert page.get_attribute("#overview-version", "data-value") == daemon["version"]
    programs = {p["name"]: p for p in daemon["programs"]}
    for name in ("web", "events"):
        row = f"#overview-programs tr[data-program={name}]"
        assert status_of(page, row) == "RUNNING"
        assert page.inner_text(f"{row} td:nth-child(3)") == str(programs[name]["pid"])
    assert page.get_attribute("#nav a[data-route=overview]", "aria-current") == "page"
    assert page.get_attribute("#connection", "data-state") in ("open", "connecting")
    page.wait_for_selector("#connection[data-state=open]")


# -- profiles -------------------------------------------------------------------------------


def wait_fake_models(page):
    """The model select shows the fake provider's one model (not a list drawn before the choice)."""
    page.wait_for_function("() => [...document.querySelectorAll('#profile-model option')].map(o => o.value)"
                           ".join() === 'claude-sonnet-4-5'")


def test_profile_form_offers_the_apis_agents_and_providers(page, ui_daemon):
    goto(page, ui_daemon, "profiles")
    page.wait_for_selector("#profile-provider option[value=fake]", state="attached")
    agents = sorted(a["id"] for a in api(ui_daemon, "GET", "/api/agents"))
    providers = sorted(p["id"] for p in api(ui_daemon, "GET", "/api/providers"))
    assert sorted(page.eval_on_selector_all("#profile-agent option", "os => os.map(o => o.value)")) == agents
    assert sorted(page.eval_on_selector_all("#profile-provider option", "os => os.map(o => o.value)")) == providers
    page.select_option("#profile-provider", "fake")
    wait_fake_models(page)
    assert page.eval_on_selector_all("#profile-model option", "os => os.map(o => o.value)") == ["claude-sonnet-4-5"]
    assert page.input_value("#profile-model") == "claude-sonnet-4-5"


def test_create_a_shell_profile_through_the_form(page, ui_daemon):
    alias = "form-shell"
    goto(page, ui_daemon, "profiles")
    page.wait_for_selector("#profile-agent option[value=shell]", state="attached")
    page.fill("#profile-alias", alias)
    page.select_option("#profile-agent", "shell")
    page.select_option("#profile-provider", "self")
    page.click("#profile-create")
    assert page.inner_text("[data-testid=profile-created]") == f"Profile {alias} created."
    page.wait_for_selector(f"#profiles-table tr[data-profile={alias}]")
    cells = page.eval_on_selector_all(f"#profiles-table tr[data-profile={alias}] td",
                                      "tds => tds.map(t => t.innerText)")
    assert cells[:4] == [alias, "shell", "self", "default"]
    assert page.input_value("#profile-alias") == ""
    profile = api(ui_daemon, "GET", f"/api/profiles/{alias}")
    assert (profile["agent_id"], profile["provider_id"]) == ("shell", "self")


def test_the_api_key_is_sent_once_and_never_shown(page, ui_daemon):
    alias = "form-keyed"
    bodies = []
    page.on("response", lambda response: bodies.append(response) if "/api/" in response.url else None)
    goto(page, ui_daemon, "profiles")
    page.wait_for_selector("#profile-provider option[value=fake]", state="attached")
    page.fill("#profile-alias", alias)
    page.select_option("#profile-agent", "shell")
    page.select_option("#profile-provider", "fake")
    wait_fake_models(page)
    page.fill("#profile-key", SECRET)
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/profiles")) as sent:
        page.click("#profile-create")
    assert f'"api_key":"{SECRET}"' in sent.value.post_data
    page.wait_for_selector("[data-testid=profile-created]")
    page.wait_for_selector(f"#profiles-table tr[data-profile={alias}]")
    assert page.input_value("#profile-key") == ""
    assert SECRET not in page.content()
    assert SECRET not in page.evaluate("() => document.body.innerText + JSON.stringify(sessionStorage) + "
                                       "JSON.stringify(localStorage)")
    for response in bodies:
        if response.request.method == "GET":
            assert SECRET not in response.text(), response.url
    with open(os.path.join(ui_daemon.home, "secrets", f"profile-{alias}.key")) as handle:
        assert handle.read().strip() == SECRET


def test_a_duplicate_alias_shows_the_apis_409_message(page, ui_daemon):
    alias = make_shell_profile(ui_daemon, "dup-shell")
    status, reply = ui_daemon.post("/api/profiles", {"alias": alias, "agent_id": "shell", "provider_id": "self",
                                                     "endpoint_id": "default"})
    assert status == 409
    goto(page, ui_daemon, "profiles")
    page.wait_for_selector("#profile-agent option[value=shell]", state="attached")
    page.fill("#profile-alias", alias)
    page.select_option("#profile-agent", "shell")
    page.select_option("#profile-provider", "self")
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/api/profiles")) as answer:
        page.click("#profile-create")
    assert answer.value.status == 409
    error = page.wait_for_selector("[data-testid=profile-error]")
    assert error.get_attribute("role") == "alert" and "error" in error.get_attribute("class").split()
    assert error.inner_text() == reply["error"]
    assert page.locator("[data-testid=profile-created]").count() == 0


def test_delete_a_profile(page, ui_daemon):
    alias = make_shell_profile(ui_daemon, "to-delete")
    goto(page, ui_daemon, "profiles")
    page.click(f"[data-action=profile-delete][data-profile={alias}]")
    page.wait_for_selector(f"#profiles-table tr[data-profile={alias}]", state="detached")
    assert page.inner_text("#notice") == f"Profile {alias} deleted."
    assert ui_daemon.get(f"/api/profiles/{alias}")[0] == 404


# -- terminals ------------------------------------------------------------------------------


def open_terminal_from_profiles(page, daemon, alias):
    goto(page, daemon, "profiles")
    page.click(f"[data-action=profile-open-terminal][data-profile={alias}]")
    page.wait_for_url(re.compile(r".*#/terminals/[0-9a-f-]+$"))
    session_id = urllib.parse.unquote(page.url.rsplit("/", 1)[1])
    page.wait_for_selector(f".terminal-view[data-session-id='{session_id}'][data-state=running] .xterm-rows")
    return session_id


def prompt_count(lines):
    return sum(1 for line in lines if PROMPT.search(line))


def run(page, session_id, command):
    """Type ``command`` + Enter with the keyboard into the focused xterm."""
    page.keyboard.type(command)
    page.keyboard.press("Enter")


def stty_size(page, session_id, before):
    """Run ``stty size`` and return (rows, cols) from its output line."""
    run(page, session_id, "stty size")
    lines = wait_screen(page, session_id,
                        lambda ls: [m for m in map(re.compile(r"^(\d+) (\d+)$").match, ls) if m][before:] and ls,
                        "stty size output")
    match = [m for m in map(re.compile(r"^(\d+) (\d+)$").match, lines) if m][before]
    return int(match.group(1)), int(match.group(2))


def test_terminal_echo_reload_resize_and_exit(page, ui_daemon, screenshots):
    alias = make_shell_profile(ui_daemon, "term-ui")
    session_id = open_terminal_from_profiles(page, ui_daemon, alias)
    pane = f".terminal-view[data-session-id='{session_id}']"
    wait_screen(page, session_id, lambda ls: prompt_count(ls) >= 1, "the shell prompt")
    assert page.evaluate("() => document.activeElement.classList.contains('xterm-helper-textarea')")
    assert page.get_attribute(f"{pane} .xterm-helper-textarea", "aria-label") == f"Terminal {session_id[:8]} input"

    run(page, session_id, "echo hi")
    lines = wait_screen(page, session_id, lambda ls: "hi" in ls and ls, "hi on the screen")
    command = next(i for i, line in enumerate(lines) if ECHO.search(line))
    assert lines[command + 1] == "hi"
    page.screenshot(path=os.path.join(screenshots, "terminal-echo.png"))

    # Reload: the open pane comes back (sessionStorage) and the server replays the scrollback.
    page.reload()
    page.wait_for_selector(f"{pane}[data-state=running] .xterm-rows")
    lines = wait_screen(page, session_id, lambda ls: "hi" in ls and ls, "hi in the scrollback after reload")
    command = next(i for i, line in enumerate(lines) if ECHO.search(line))
    assert lines[command + 1] == "hi"
    assert sum(1 for line in lines if ECHO.search(line)) == 1
    assert page.locator(".terminal-view").count() == 1

    # Resize: the pane follows the viewport; the PTY (stty) and the API report xterm's size.
    page.click(f"{pane} .terminal-screen")
    rows_before, cols_before = stty_size(page, session_id, 0)
    assert page.locator(f"{pane} .xterm-rows > div").count() == rows_before
    data = api(ui_daemon, "GET", f"/api/terminal/sessions/{session_id}")
    assert (data["rows"], data["cols"]) == (rows_before, cols_before)
    page.set_viewport_size({"width": 900, "height": 600})
    wait_for(lambda: page.locator(f"{pane} .xterm-rows > div").count() < rows_before, message="xterm to shrink")
    rows_after = wait_for(lambda: (d := api(ui_daemon, "GET", f"/api/terminal/sessions/{session_id}"))["rows"]
                          < rows_before and d["cols"] < cols_before and (d["rows"], d["cols"]), message="PTY resize")
    assert stty_size(page, session_id, 1) == rows_after
    assert page.locator(f"{pane} .xterm-rows > div").count() == rows_after[0]

    run(page, session_id, "exit 3")
    exit_code = page.wait_for_selector(f"{pane} [data-testid=terminal-exit-code]:not([hidden])")
    assert exit_code.get_attribute("data-exit-code") == "3" and exit_code.inner_text() == "exit code 3"
    page.wait_for_selector(f"{pane}[data-state=terminated]")
    assert page.is_disabled(f"{pane} [data-action=terminal-interrupt]")
    data = api(ui_daemon, "GET", f"/api/terminal/sessions/{session_id}")
    assert (data["state"], data["exit_code"]) == ("terminated", 3)


# -- usage ----------------------------------------------------------------------------------


def test_import_claude_transcripts_draws_the_chart_and_totals(page, ui_daemon):
    corpus = tempfile.mkdtemp(prefix="clown-browser-corpus-")
    try:
        start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=5)
        written = write_claude_corpus(corpus, sessions=6, entries=12, start=start, days=3, seed=21)
        assert written["files"] == 6
        goto(page, ui_daemon, "usage")
        page.wait_for_selector("#usage-total-tokens")
        assert page.input_value("#usage-period") == "7d"
        page.fill("#import-claude-dir", corpus)
        page.click("#import-claude")
        try:
            done = page.wait_for_selector("[data-testid=import-done], [data-testid=import-error]", timeout=60000)
        except Exception as error:
            raise AssertionError(f"import did not finish: {page.inner_text('#import-progress-text')!r}; "
                                 f"clownd: {ui_daemon.output()}") from error
        assert done.get_attribute("data-testid") == "import-done", done.inner_text()
        assert done.inner_text().strip() != ""
        assert page.is_visible("#import-progress")
        assert page.evaluate("() => { const p = document.querySelector('#import-progress');"
                             " return [p.value, p.max]; }") == [1, 1]
        assert page.inner_text("#import-progress-text") == "Done."
        assert page.locator("[data-testid=import-error]").count() == 0

        usage = api(ui_daemon, "GET", "/api/usage?period=7d")
        total = sum(usage["total_tokens"][kind] for kind in TOKEN_KINDS)
        assert total > 0
        page.wait_for_selector(f"#usage-total-tokens[data-value='{total}']")
        assert page.inner_text("#usage-period-label") == usage["period"] == "Last 7 days"
        by_day = usage["aggregates"]["by_day"]
        bars = page.eval_on_selector_all("#usage-chart svg rect.bar[data-day]",
                                         "rs => rs.map(r => [r.dataset.day, Number(r.dataset.tokens)])")
        assert sorted(bars) == sorted([day, sum(v["tokens"].get(k, 0) for k in TOKEN_KINDS)]
                                      for day, v in by_day.items())
        assert len([day for day, tokens in bars if tokens]) >= 2 and sum(tokens for _, tokens in bars) == total
        for kind, hook in zip(TOKEN_KINDS, ("input", "output", "cache-creation", "cache-read")):
            assert page.get_attribute(f"#usage-{hook}-tokens", "data-value") == str(usage["total_tokens"][kind])
        assert list(usage["aggregates"]["by_profile"]) == [""]  # the corpus lies outside every profile's home
        assert page.inner_text("#usage-by-profile tr[data-profile=''] td:first-child") == "(no profile)"
        models = sorted(usage["aggregates"]["by_model"])
        shown = page.eval_on_selector_all("#usage-by-model tr[data-model]", "rs => rs.map(r => r.dataset.model)")
        assert sorted(shown) == models
    finally:
        shutil.rmtree(corpus, ignore_errors=True)


# -- proxies --------------------------------------------------------------------------------


def click_proxy(page, alias, verb):
    """Click Start/Stop; returns the API's answer to the POST the click made."""
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith(f"/api/proxy/{alias}/{verb}")) \
            as answer:
        page.click(f"[data-action=proxy-{verb}][data-profile={alias}]")
    assert answer.value.status == 200
    reply = answer.value.json()["data"]
    page.wait_for_function("(text) => document.querySelector('#notice').textContent === text",
                           arg=f"Proxy for {alias}: {reply['status']}.")
    return reply


def test_start_and_stop_a_proxy(page, ui_daemon):
    alias = "proxied"
    api(ui_daemon, "POST", "/api/profiles", {"alias": alias, "agent_id": "claude", "provider_id": "fake",
                                             "model": "claude-sonnet-4-5", "api_key": SECRET, "proxy": True})
    goto(page, ui_daemon, "proxies")
    row = f"#proxies-table tr[data-profile={alias}]"
    page.wait_for_selector(f"{row}[data-status=stopped]")
    assert page.is_disabled(f"[data-action=proxy-stop][data-profile={alias}]")
    assert click_proxy(page, alias, "start")["status"] in ("starting", "running")
    page.wait_for_selector(f"{row}[data-status=running]")
    status = api(ui_daemon, "GET", f"/api/proxy/status/{alias}")
    assert status["status"] == "running" and status["pid"], status
    assert page.inner_text(f"{row} td:nth-child(3)") == str(status["port"])
    assert page.inner_text(f"{row} td:nth-child(4)") == str(status["pid"])
    assert page.is_disabled(f"[data-action=proxy-start][data-profile={alias}]")
    assert click_proxy(page, alias, "stop")["status"] == "stopped"
    page.wait_for_selector(f"{row}[data-status=stopped]")
    assert api(ui_daemon, "GET", f"/api/proxy/status/{alias}")["status"] == "stopped"
    assert page.is_disabled(f"[data-action=proxy-stop][data-profile={alias}]")


def test_a_refused_proxy_start_shows_the_apis_message(page, ui_daemon):
    alias = make_shell_profile(ui_daemon, "no-proxy")
    status, reply = ui_daemon.post(f"/api/proxy/{alias}/start")
    assert status == 409
    goto(page, ui_daemon, "proxies")
    page.click(f"[data-action=proxy-start][data-profile={alias}]")
    page.wait_for_function("(text) => document.querySelector('#notice').textContent === text",
                           arg=f"Could not start the proxy for {alias}: {reply['error']}")
    assert page.get_attribute(f"#proxies-table tr[data-profile={alias}]", "data-status") == "stopped"


# -- sign-in --------------------------------------------------------------------------------


def test_sign_in_with_token(page, token_daemon):
    status, reply = token_daemon.post("/api/auth/login", {"token": "not-the-token"})
    assert status == 401
    wrong_message = reply["error"]["message"] if isinstance(reply["error"], dict) else reply["error"]
    page.goto(token_daemon.url + "/")
    page.wait_for_selector("#signin-dialog[open]")
    assert page.evaluate("() => document.activeElement.id") == "signin-token"
    assert page.locator("#overview-status").count() == 0
    page.keyboard.type("not-the-token")
    page.keyboard.press("Enter")
    error = page.wait_for_selector("#signin-error:not([hidden])")
    assert error.inner_text() == wrong_message
    assert page.is_visible("#signin-dialog[open]")
    page.fill("#signin-token", TOKEN)
    page.keyboard.press("Enter")
    page.wait_for_selector("#signin-dialog:not([open])", state="attached")
    page.wait_for_selector("#overview-status [data-status=running]")
    page.wait_for_selector("#overview-programs tr[data-program=web] [data-status=RUNNING]")
    page.wait_for_selector("#connection[data-state=open]")
    assert [c["name"] for c in page.context.cookies()] == ["clown_session"]


def sign_in(page, daemon):
    page.goto(daemon.url + "/")
    page.wait_for_selector("#signin-dialog[open]")
    page.fill("#signin-token", TOKEN)
    page.click("#signin-submit")
    page.wait_for_selector("#signin-dialog:not([open])", state="attached")


def test_empty_states_on_a_fresh_daemon(page, token_daemon):
    sign_in(page, token_daemon)
    for route, testid in (("profiles", "profiles-empty"), ("terminals", "terminals-empty"),
                          ("proxies", "proxies-empty")):
        goto(page, token_daemon, route)
        empty = page.wait_for_selector(f"[data-testid={testid}]")
        assert empty.inner_text() != ""
    goto(page, token_daemon, "overview")
    assert page.wait_for_selector("#overview [data-testid=sessions-empty]").inner_text() \
        == "No terminal or agent session is running."


# -- every page -----------------------------------------------------------------------------


def test_keyboard_navigation_reaches_every_page(page, ui_daemon):
    goto(page, ui_daemon, "overview")
    focused = "() => [document.activeElement.tagName, document.activeElement.dataset.route || "\
              "document.activeElement.className || document.activeElement.textContent]"
    assert page.evaluate(focused) == ["H1", "Overview"]  # a route change focuses the page's heading
    for name in reversed(PAGES):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(focused) == ["A", name]
    page.keyboard.press("Shift+Tab")
    assert page.evaluate(focused) == ["A", "skip-link"]
    for _ in range(PAGES.index("proxies") + 1):
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("#main[data-view=proxies]")
    assert page.get_attribute("#nav a[data-route=proxies]", "aria-current") == "page"
    assert page.evaluate(focused) == ["H1", "Proxies"]


def test_every_page_renders_without_console_errors_labelled_and_small(context, page, ui_daemon, screenshots):
    own = {}

    def record(response):
        path = urllib.parse.urlparse(response.url).path
        if path.startswith("/static/") and not path.startswith("/static/vendor/") and path.endswith((".js", ".css")):
            own[path] = len(response.body())
    vendor = []
    page.on("response", record)
    page.on("request", lambda r: vendor.append(r.url) if "/static/vendor/" in r.url else None)
    goto(page, ui_daemon, "overview")
    page.wait_for_load_state("networkidle")
    first_load = sum(own.values())
    assert "/static/js/app.js" in own and "/static/app.css" in own and "/static/js/usage-chart.js" in own
    assert first_load < 300 * 1024, own
    assert vendor == []  # xterm.js is loaded only with a terminal
    for name in PAGES:
        page.click(f"#nav a[data-route={name}]")
        page.wait_for_selector(f"#main[data-view={name}]")
        page.wait_for_selector("#main h1")
        page.wait_for_selector("#main [aria-busy=true]", state="detached")
        page.wait_for_load_state("networkidle")
        time.sleep(0.2)
        assert page.get_attribute(f"#nav a[data-route={name}]", "aria-current") == "page"
        assert unlabelled_controls(page) == [], name
        assert page.locator("#main .error[role=alert]").count() == 0, page.inner_text("#main")
        page.screenshot(path=os.path.join(screenshots, f"{name}.png"), full_page=True)
    assert page.console.errors == []
    assert page.console.page_errors == []
