"""The ``events`` program: a supervisor event listener that records process state changes.

Every PROCESS_STATE_* event becomes a ``program_events`` row (program, from, to, pid,
expected, time). supervisor keeps no restart count, so this listener keeps one: a
program entering STARTING from EXITED or BACKOFF was restarted by supervisor on its own
(an operator's start comes from STOPPED). stdout belongs to the listener protocol; the
log goes to stderr.
"""

import argparse
import logging
import sys

from clown import clock, store
from clown.home import Home

log = logging.getLogger("clown.events")

AUTOMATIC_RESTART_FROM = ("EXITED", "BACKOFF")


def parse_tokens(line: str) -> dict:
    """``"a:1 b:2"`` → ``{"a": "1", "b": "2"}`` (supervisor's header and payload format)."""
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


def record(conn, headers: dict, payload: dict) -> None:
    """Store one PROCESS_STATE event and bump the restart count when it is a restart."""
    to_state = headers["eventname"].replace("PROCESS_STATE_", "")
    from_state = payload.get("from_state", "")
    program = payload.get("processname", "")
    group = payload.get("groupname", program)
    pid = int(payload["pid"]) if payload.get("pid", "").isdigit() else None
    expected = int(payload["expected"]) if payload.get("expected", "").isdigit() else None
    now = clock.utc_iso()
    with store.transaction(conn):
        conn.execute(
            "INSERT INTO program_events (program, group_name, from_state, to_state, pid, expected, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (program, group, from_state, to_state, pid, expected, now))
        if to_state == "STARTING" and from_state in AUTOMATIC_RESTART_FROM:
            conn.execute(
                "INSERT INTO program_restarts (program, restarts, last_restart) VALUES (?, 1, ?)"
                " ON CONFLICT(program) DO UPDATE SET restarts = restarts + 1, last_restart = excluded.last_restart",
                (program, now))


def serve(conn, stdin=sys.stdin, stdout=sys.stdout) -> None:
    """Run the listener protocol until stdin closes."""
    while True:
        stdout.write("READY\n")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return
        headers = parse_tokens(line)
        body = stdin.read(int(headers.get("len", "0")))
        payload_line = body.split("\n", 1)[0]
        result = "OK"
        try:
            if headers.get("eventname", "").startswith("PROCESS_STATE"):
                record(conn, headers, parse_tokens(payload_line))
        except Exception:  # never let one bad event stop the listener; supervisor would resend
            log.exception("could not record event %r", line)
            result = "FAIL"
        stdout.write(f"RESULT {len(result)}\n{result}")
        stdout.flush()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="clown-events")
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    home = Home(args.home)
    conn = store.open_store(home.db)
    serve(conn)


if __name__ == "__main__":
    main()
