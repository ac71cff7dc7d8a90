"""Fixtures of the browser tests: Debian's chromium driven by Playwright, real clownd daemons."""

import os

import pytest
from playwright import sync_api

from tests.clownd import REPO, Daemon
from tests.fakes.upstream import FakeUpstream

CHROMIUM = os.environ.get("CLOWN_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = os.path.join(REPO, "test-artifacts", "screenshots")
TOKEN = "browser-test-token-0123456789abcdef"
VIEWPORT = {"width": 1280, "height": 900}


def fake_provider_toml(url: str) -> str:
    return ('id = "fake"\nname = "Fake upstream"\ntype = "anthropic-compatible"\ndefault_endpoint = "default"\n'
            f'[endpoints]\ndefault = "{url}"\n[auth]\nenv_key = "ANTHROPIC_API_KEY"\nrequired = true\n'
            '[models]\navailable = ["claude-sonnet-4-5"]\ndefault = "claude-sonnet-4-5"\n')


@pytest.fixture(scope="module")
def browser():
    # bin/clown-test installs chromium and builds the UI assets; missing either is a failure.
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing"
    assert os.path.exists(os.path.join(REPO, "clown", "static", "vendor", "xterm.js")), "web UI assets not built"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots():
    os.makedirs(SCREENSHOTS, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream() as fake:
        yield fake


def _start(home, toml: str = "", before=None) -> Daemon:
    daemon = Daemon(home, toml=toml)
    if before:
        before(daemon)
    try:
        return daemon.start()
    except BaseException:
        daemon.kill_everything()
        raise


def _stop(daemon: Daemon) -> None:
    try:
        daemon.stop()
    finally:
        daemon.kill_everything()


@pytest.fixture(scope="module")
def ui_daemon(tmp_path_factory, upstream):
    """One clownd for the module, with providers.d/fake.toml pointing at the fake upstream."""
    def write_provider(daemon):
        directory = os.path.join(daemon.home, "providers.d")
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "fake.toml"), "w") as handle:
            handle.write(fake_provider_toml(upstream.url))

    daemon = _start(tmp_path_factory.mktemp("ui-home"), '[usage]\ntimezone = "UTC"\n', write_provider)
    yield daemon
    _stop(daemon)


@pytest.fixture(scope="module")
def token_daemon(tmp_path_factory):
    """A fresh clownd with token auth on; nothing is created in it."""
    daemon = _start(tmp_path_factory.mktemp("token-home"), f'[server]\ntoken = "{TOKEN}"\n')
    daemon.auth_headers = {"Authorization": f"Bearer {TOKEN}"}
    yield daemon
    _stop(daemon)


class Console:
    """What the page logged: console messages by type, uncaught exceptions."""

    def __init__(self, page):
        self.messages = []
        self.page_errors = []
        page.on("console", lambda message: self.messages.append((message.type, message.text)))
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    @property
    def errors(self):
        return [text for kind, text in self.messages if kind == "error"]


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15000)
    yield context
    context.close()


@pytest.fixture
def page(context):
    """A page whose console is recorded (``page.console``); an uncaught exception fails the test."""
    page = context.new_page()
    page.console = Console(page)
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    assert page.console.page_errors == []
