"""Which browser origins may open a WebSocket: the defence against cross-site WebSocket hijacking.

A browser sends the page's Origin with every WebSocket handshake and lets any page connect
anywhere, with the visitor's cookies and network position. So a handshake whose Origin is not the
server's own and not on the allowlist is refused (403) before the upgrade. A client that sends no
Origin is not a browser (a server, a CLI, the load generator) and passes: it could write any
Origin it liked anyway.

Patterns: an exact origin (`https://app.example.com`, `http://localhost:3000`), a subdomain
pattern (`https://*.example.com`: any host under example.com, not example.com itself), or `*`.
Origins compare case-insensitively, with the scheme's default port left out (RFC 6454).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def split(text: str) -> list[str]:
    """The patterns of a comma-separated setting."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _normalise(origin: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of an origin; None when it is not one (`null`, a path, no host)."""
    try:
        parts = urllib.parse.urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    if port == DEFAULT_PORTS[parts.scheme]:
        port = None
    return parts.scheme, parts.hostname, port


def _own(seen: tuple[str, str, int | None], host: str | None) -> bool:
    """Whether the origin is the server's own: the host and port the request was sent to. The
    scheme is left out: behind a TLS-terminating proxy the page is https and the request plain
    HTTP, and a page of the same host over the other scheme is no other site."""
    if not host:
        return False
    try:
        parts = urllib.parse.urlsplit("//" + host.strip().lower())
        port = parts.port
    except ValueError:
        return False
    if port == DEFAULT_PORTS[seen[0]]:
        port = None
    return (parts.hostname, port) == (seen[1], seen[2])


def valid_pattern(pattern: str) -> bool:
    if pattern == "*":
        return True
    return _normalise(pattern.replace("*.", "x.", 1) if "://*." in pattern else pattern) is not None


@dataclass(frozen=True)
class Policy:
    """The allowlist of the `allowed_origins` setting."""

    patterns: Sequence[str]

    @classmethod
    def from_setting(cls, text: str) -> Policy:
        return cls(tuple(split(text)))

    def allows(self, origin: str | None, host: str | None) -> bool:
        """Whether a handshake with this Origin header may go on; `host` is its Host header."""
        if origin is None:
            return True
        seen = _normalise(origin)
        if seen is None:
            return False
        return _own(seen, host) or any(self._matches(pattern, seen) for pattern in self.patterns)

    @staticmethod
    def _matches(pattern: str, seen: tuple[str, str, int | None]) -> bool:
        if pattern == "*":
            return True
        if "://*." in pattern:
            scheme, _, rest = pattern.lower().partition("://*.")
            wanted = _normalise(f"{scheme}://{rest}")
            if wanted is None:
                return False
            return (
                seen[0] == wanted[0] and seen[2] == wanted[2] and seen[1].endswith("." + wanted[1])
            )
        return _normalise(pattern) == seen
