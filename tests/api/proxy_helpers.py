"""Helpers of the proxy and usage tests: a provider pointing at a fake upstream, a profile, raw requests."""

import http.client
import json
import os
import sqlite3

REAL_KEY = "sk-real-key-0123456789abcdef"


def provider_toml(provider_id: str, url: str, kind: str = "anthropic") -> str:
    env_key = "ANTHROPIC_API_KEY" if kind.startswith("anthropic") else "OPENAI_API_KEY"
    return (f'id = "{provider_id}"\nname = "Fake {provider_id}"\ntype = "{kind}"\ndefault_endpoint = "default"\n'
            f'[endpoints]\ndefault = "{url}"\n[auth]\nenv_key = "{env_key}"\nrequired = true\n'
            '[models]\navailable = ["claude-sonnet-4-5", "gpt-5"]\ndefault = "claude-sonnet-4-5"\n')


def add_provider(daemon, provider_id: str, url: str, kind: str = "anthropic") -> None:
    directory = os.path.join(daemon.home, "providers.d")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{provider_id}.toml"), "w") as handle:
        handle.write(provider_toml(provider_id, url, kind))


def create_profile(daemon, alias: str, provider_id: str, agent_id: str = "claude", model: str = "claude-sonnet-4-5",
                   proxy: bool = False) -> None:
    status, reply = daemon.post("/api/profiles", {"alias": alias, "agent_id": agent_id, "provider_id": provider_id,
                                                  "model": model, "api_key": REAL_KEY, "proxy": proxy})
    assert status == 200, reply


def start_proxy(daemon, alias: str) -> dict:
    """POST /api/proxy/{alias}/start, which must answer 200; its status data (port, pid, ...)."""
    status, reply = daemon.post(f"/api/proxy/{alias}/start")
    assert status == 200, reply
    return reply["data"]


def open_session_starting_proxy(daemon, alias: str, **body) -> tuple[str, dict]:
    """A terminal session of ``alias``, whose proxy is on but stopped: the proxy runs by the
    time the session is created, before the agent could need it. (session id, proxy status)."""
    import psutil

    status, reply = daemon.get(f"/api/proxy/status/{alias}")
    assert status == 200
    assert (reply["data"]["enabled"], reply["data"]["status"], reply["data"]["pid"]) == (True, "stopped", None)
    status, reply = daemon.post("/api/terminal/sessions", {"profile_alias": alias, **body})
    assert status == 200, reply
    session_id = reply["data"]["session_id"]
    status, reply = daemon.get(f"/api/proxy/status/{alias}")
    assert status == 200
    proxy = reply["data"]
    assert (proxy["profile"], proxy["enabled"], proxy["status"]) == (alias, True, "running")
    assert psutil.pid_exists(proxy["pid"])
    return session_id, proxy


def placeholder(daemon, alias: str) -> str:
    with open(os.path.join(daemon.home, "secrets", f"profile-{alias}.placeholder")) as handle:
        return handle.read().strip()


def send(port: int, path: str, body: dict | None, headers: dict | None = None, method: str = "POST",
         timeout: float = 30.0):
    """One raw request to a proxy: (status, headers, body bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    payload = json.dumps(body).encode() if body is not None else None
    connection.request(method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, response, data


def committed_proxy_rows(home: str) -> int:
    """Proxy usage rows committed to the store: folded into usage_events, or still in the inbox."""
    conn = sqlite3.connect(os.path.join(home, "clown.db"))
    try:
        return conn.execute("SELECT (SELECT COUNT(*) FROM usage_events WHERE source = 'proxy')"
                            " + (SELECT COUNT(*) FROM usage_inbox WHERE source = 'proxy')").fetchone()[0]
    finally:
        conn.close()


def free_port_run(count: int, attempts: int = 50) -> int:
    """The first of ``count`` consecutive ports that are all free on 127.0.0.1 right now."""
    import socket

    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            low = probe.getsockname()[1]
        if low + count > 65535:
            continue
        probes = []
        try:
            for port in range(low, low + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return low
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no run of {count} free ports found")


def files_containing(root: str, needles) -> list[str]:
    """Every file under ``root`` whose bytes contain one of ``needles`` (str or bytes)."""
    wanted = [needle.encode() if isinstance(needle, str) else needle for needle in needles]
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            if any(needle in data for needle in wanted):
                found.append(path)
    return found
