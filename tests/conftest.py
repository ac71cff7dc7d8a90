import pytest

from tests.clownd import Daemon


@pytest.fixture
def daemon_factory(tmp_path):
    """Start clownd daemons in temp homes; every one still running is stopped at the end."""
    started = []

    def start(toml: str = "", env: dict | None = None, home=None) -> Daemon:
        daemon = Daemon(home or tmp_path / f"home{len(started)}", toml=toml, env=env)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        try:
            daemon.stop()
        finally:
            daemon.kill_everything()


@pytest.fixture
def daemon(daemon_factory):
    """A fresh clownd with default config."""
    return daemon_factory()


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory):
    """One clownd for a whole module of read-mostly tests."""
    daemon = Daemon(tmp_path_factory.mktemp("shared-home")).start()
    yield daemon
    try:
        daemon.stop()
    finally:
        daemon.kill_everything()
