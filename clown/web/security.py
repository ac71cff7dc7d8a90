"""Who may talk to the daemon: Host names, Origins and the auth token.

A DNS-rebinding page reaches us with its own name in ``Host``; a page on another site
sends its own ``Origin``. Both are refused before any handler runs.
"""

import hmac
import urllib.parse

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
COOKIE = "clown_session"


def split_host(host_header: str) -> str:
    """The name part of a ``Host`` header value, lower-cased, without port or brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host


class AccessPolicy:
    """Decisions on Host, Origin and token, from the ``[server]`` config."""

    def __init__(self, host: str, allowed_hosts, token: str | None):
        names = set(LOOPBACK_NAMES)
        names.add(split_host(host))
        names.update(split_host(name) for name in allowed_hosts)
        names.discard("0.0.0.0")
        names.discard("::")
        self.host_names = frozenset(names)
        self.token = token

    def host_allowed(self, host_header: str | None) -> bool:
        return bool(host_header) and split_host(host_header) in self.host_names

    def origin_allowed(self, origin: str, host_header: str | None) -> bool:
        """Same origin as ``Host``, or ``http://localhost:*`` / ``http://127.0.0.1:*``."""
        try:
            parts = urllib.parse.urlsplit(origin)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        if host_header and parts.netloc.lower() == host_header.strip().lower():
            return True
        return parts.scheme == "http" and (parts.hostname or "") in ("localhost", "127.0.0.1")

    def token_ok(self, authorization: str | None, cookie: str | None) -> bool:
        """True when no token is configured, or the bearer token or cookie matches it."""
        if not self.token:
            return True
        expected = self.token.encode()
        if authorization and authorization.startswith("Bearer "):
            if hmac.compare_digest(authorization[7:].strip().encode(), expected):
                return True
        if cookie and hmac.compare_digest(cookie.encode(), expected):
            return True
        return False
