"""The ``tmux`` program: clown's private tmux server, run by supervisord in the foreground.

``python -m clown.sessions.backends.tmux_server --home H`` becomes ``tmux -S <sock> -f
<conf> -D``. Being a supervisor program, the server (and every tmux session in it) ends
when clownd stops and outlives a restart of ``web``; the parent-death signal, which
survives the exec, ends it if supervisord itself is killed.
"""

import argparse
import os
import signal

from clown.home import Home
from clown.procs import set_parent_death_signal

PROGRAM = "tmux"
SOCKET = "tmux.sock"
# remain-on-exit keeps a dead pane (and its exit status) until clown has read it.
CONF = """set -g remain-on-exit on
set -g exit-empty off
set -g history-limit 10000
"""


def conf_path(home: Home) -> str:
    return os.path.join(home.run, "tmux.conf")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="clown-tmux")
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    home = Home(args.home)
    sock = home.socket(SOCKET)
    with open(conf_path(home), "w") as handle:
        handle.write(CONF)
    try:
        os.unlink(sock)  # a stale socket of a server that died
    except FileNotFoundError:
        pass
    set_parent_death_signal(signal.SIGTERM)
    os.execvp("tmux", ["tmux", "-S", sock, "-f", conf_path(home), "-D"])


if __name__ == "__main__":
    main()
