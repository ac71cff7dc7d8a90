"""The layout of a clown home: every path clown writes lives under ``$CLOWN_HOME``.

Unix socket paths are capped at 108 bytes. When ``$CLOWN_HOME/run/sock`` would be too
long for a socket name inside it, the sockets go to a short private directory under the
system temp dir instead, named after a hash of the home, and its path is recorded in
``run/sockdir`` so that every process finds the same place.
"""

import hashlib
import os
import tempfile

# Longest socket file name we put in the socket dir ("term-<uuid4>.sock" is 46 bytes).
_LONGEST_SOCKET_NAME = 64
_SUN_PATH_MAX = 107


def default_home() -> str:
    """``$CLOWN_HOME``, else ``$XDG_DATA_HOME/clown``, else ``~/.local/share/clown``."""
    if os.environ.get("CLOWN_HOME"):
        return os.environ["CLOWN_HOME"]
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "clown")


class Home:
    """Paths under one clown home. Creating the object touches nothing; ``ensure()`` does."""

    def __init__(self, root: str):
        self.root = os.path.realpath(os.path.abspath(os.path.expanduser(root)))
        self.run = os.path.join(self.root, "run")
        self.conf_d = os.path.join(self.run, "conf.d")
        self.specs = os.path.join(self.run, "specs")
        self.supervisord_conf = os.path.join(self.run, "supervisord.conf")
        self.supervisord_pid = os.path.join(self.run, "supervisord.pid")
        self.lock = os.path.join(self.run, "clownd.lock")
        self.resolved_config = os.path.join(self.run, "config.json")
        self.logs = os.path.join(self.root, "logs")
        self.secrets = os.path.join(self.root, "secrets")
        self.profiles = os.path.join(self.root, "profiles")
        self.worktrees = os.path.join(self.root, "worktrees")
        self.registry = os.path.join(self.root, "registry")
        self.scrollback = os.path.join(self.root, "scrollback")
        self.agents_d = os.path.join(self.root, "agents.d")
        self.providers_d = os.path.join(self.root, "providers.d")
        self.config_file = os.path.join(self.root, "clown.toml")
        self.db = os.path.join(self.root, "clown.db")
        self._sock_dir = None

    # Directories clown creates at start, with their modes.
    _PRIVATE = ("run", "conf_d", "specs", "secrets", "logs", "scrollback")
    _OPEN = ("profiles", "worktrees", "registry")

    def ensure(self) -> None:
        """Create the home's directories; private ones (0700) are re-moded if they exist."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        for name in self._PRIVATE:
            path = getattr(self, name)
            os.makedirs(path, mode=0o700, exist_ok=True)
            os.chmod(path, 0o700)
        for name in self._OPEN:
            os.makedirs(getattr(self, name), mode=0o700, exist_ok=True)
        sock = self.sock_dir
        os.makedirs(sock, mode=0o700, exist_ok=True)
        os.chmod(sock, 0o700)

    @property
    def sock_dir(self) -> str:
        """The private directory of every Unix socket of this home (see module doc)."""
        if self._sock_dir is None:
            self._sock_dir = self._pick_sock_dir()
        return self._sock_dir

    def _pick_sock_dir(self) -> str:
        inside = os.path.join(self.run, "sock")
        if len(inside) + 1 + _LONGEST_SOCKET_NAME <= _SUN_PATH_MAX:
            return inside
        digest = hashlib.sha256(self.root.encode()).hexdigest()[:12]
        short = os.path.join(tempfile.gettempdir(), f"clown-{os.getuid()}-{digest}")
        record = os.path.join(self.run, "sockdir")
        try:
            os.makedirs(self.run, mode=0o700, exist_ok=True)
            with open(record, "w") as handle:
                handle.write(short + "\n")
        except OSError:
            pass
        return short

    def socket(self, name: str) -> str:
        """The path of socket ``name`` (e.g. ``supervisor.sock``, ``term-<id>.sock``)."""
        return os.path.join(self.sock_dir, name)

    def profile_home(self, alias: str) -> str:
        return os.path.join(self.profiles, alias)

    def spec(self, program: str) -> str:
        """The 0600 launch spec a worker program reads at start."""
        return os.path.join(self.specs, program + ".json")
