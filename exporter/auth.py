"""Who a connection is: tokens that carry a user, roles, room and topic prefixes and an expiry.

Two kinds of verifier, one interface (`verify(token) -> Identity`, or AuthError):

- JWT (PyJWT): HS256 with a shared secret read from a file, or RS256 / ES256 with a public key
  file (PEM; the key's type picks the algorithm, so a token can never choose a weaker one, and
  `none` is never accepted). `sub` and `exp` are required; `roles`, `rooms`, `topics` optional.
- A static tokens file for small setups: YAML, one entry per token, holding the SHA-256 of the
  token (never the token itself, so the file is no secret to steal), its user, roles, prefixes and
  an optional expiry.

Where the token comes from: `Authorization: Bearer <token>`, or for browsers, whose WebSocket API
cannot set headers, the subprotocols `wsmon.bearer, <token>` (the server then answers with
`wsmon.bearer`). Tokens never reach a log line: errors name what is wrong, never the token.

The pool's own probes (GET /probe connects to the server itself) present PROBE_KEY_VARIABLE's
random key instead: the supervisor draws it at start and its workers inherit it, so a probe needs
no token from the operator whichever verifier is configured.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from wsmon.yamlfile import YamlFileError, read_yaml

from .config import Settings

BEARER_PROTOCOL: Final = "wsmon.bearer"
# Not WSMON_*: no setting of anyone's, and the server's own settings never read it.
PROBE_KEY_VARIABLE: Final = "_WSMON_PROBE_KEY"
PROBE_USER: Final = "wsmon-probe"
# The close code of a connection whose token expired: the client should fetch a new one and
# reconnect (4000-4999 are the application's own, RFC 6455 §7.4.2).
EXPIRED: Final = 4001
NO_AUTH_WARNING: Final = (
    "AUTHENTICATION IS OFF (--no-auth): any client may connect, identify as anyone and"
    " broadcast. For development only; set auth_jwt_secret_file, auth_jwt_public_key_file or"
    " auth_tokens_file in production"
)
ADMIN: Final = "admin"
LEEWAY_SECONDS: Final = 5.0  # clocks of the token issuer and this host may differ that much
_DIGEST: Final = re.compile(r"^[0-9a-f]{64}$")


class AuthError(Exception):
    """A token that is missing, malformed, badly signed or expired; `reason` is one word."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason  # missing | invalid | expired


class AuthConfigError(ValueError):
    """A key or tokens file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Identity:
    user: str
    roles: frozenset[str]
    # Name prefixes the user may join / subscribe to; None: any.
    rooms: tuple[str, ...] | None
    topics: tuple[str, ...] | None
    expires: float | None  # seconds since the epoch; None: never

    @property
    def admin(self) -> bool:
        return ADMIN in self.roles

    def may_join(self, room: str) -> bool:
        return self.rooms is None or room.startswith(self.rooms)

    def may_use_topic(self, topic: str) -> bool:
        return self.topics is None or topic.startswith(self.topics)


# The one identity of the pool's own probes: compared by `is`, so a token whose `sub` happens to
# be PROBE_USER is no probe (caps.py exempts probes only).
PROBE_IDENTITY: Final = Identity(PROBE_USER, frozenset({ADMIN}), None, None, None)


class Verifier(Protocol):
    def verify(self, token: str) -> Identity: ...


def _prefixes(value: Any, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"{what} must be a string or a list of strings")


def _identity(claims: Mapping[str, Any], expires: float | None) -> Identity:
    user = claims.get("sub", claims.get("user"))
    if not isinstance(user, str) or not user:
        raise ValueError("the user (sub) must be a non-empty string")
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise ValueError("roles must be a list of strings")
    return Identity(
        user,
        frozenset(roles),
        _prefixes(claims.get("rooms"), "rooms"),
        _prefixes(claims.get("topics"), "topics"),
        expires,
    )


class JwtVerifier:
    def __init__(self, key: Any, algorithm: str, audience: str | None = None) -> None:
        self.key = key
        self.algorithm = algorithm
        self._audience = audience

    @classmethod
    def from_secret_file(cls, path: Path, audience: str | None = None) -> JwtVerifier:
        secret = _read(path).strip()
        if len(secret) < 32:
            raise AuthConfigError(f"{path}: an HS256 secret needs at least 32 bytes")
        return cls(secret, "HS256", audience)

    @classmethod
    def from_public_key_file(cls, path: Path, audience: str | None = None) -> JwtVerifier:
        try:
            key = load_pem_public_key(_read(path))
        except ValueError as exc:
            raise AuthConfigError(f"{path}: not a PEM public key ({exc})") from None
        if isinstance(key, rsa.RSAPublicKey):
            return cls(key, "RS256", audience)
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            return cls(key, "ES256", audience)
        raise AuthConfigError(f"{path}: expected an RSA or P-256 public key")

    def verify(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                audience=self._audience,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired", "the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError("invalid", f"the token is not valid: {exc}") from None
        try:
            return _identity(claims, float(claims["exp"]))
        except ValueError as exc:
            raise AuthError("invalid", f"the token's claims: {exc}") from None


class TokenFileVerifier:
    """Tokens listed by their SHA-256 (`wsmon`-side: `sha256sum` of the token, no newline)."""

    def __init__(self, entries: Mapping[str, Identity]) -> None:
        self._entries = entries

    @classmethod
    def from_file(cls, path: Path) -> TokenFileVerifier:
        try:
            data = read_yaml(path, "tokens file")
        except YamlFileError as exc:
            raise AuthConfigError(str(exc)) from None
        if not isinstance(data, list):
            raise AuthConfigError(f"{path}: must be a list of tokens")
        entries: dict[str, Identity] = {}
        for number, entry in enumerate(data, start=1):
            where = f"{path}: entry {number}"
            if not isinstance(entry, dict):
                raise AuthConfigError(f"{where}: must be a mapping")
            digest = str(entry.get("sha256", "")).lower()
            if not _DIGEST.match(digest):
                raise AuthConfigError(f"{where}: sha256 must be the token's 64 hex digits")
            if digest in entries:
                raise AuthConfigError(f"{where}: the same token is listed twice")
            try:
                entries[digest] = _identity(entry, _expiry(entry.get("expires")))
            except ValueError as exc:
                raise AuthConfigError(f"{where}: {exc}") from None
        return cls(entries)

    def verify(self, token: str) -> Identity:
        identity = self._entries.get(hashlib.sha256(token.encode()).hexdigest())
        if identity is None:
            raise AuthError("invalid", "the token is not listed")
        if identity.expires is not None and identity.expires < time.time():
            raise AuthError("expired", "the token has expired")
        return identity


def _expiry(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # not a date: refused below
            value = datetime.fromisoformat(value)
    if isinstance(value, datetime):  # YAML reads an unquoted timestamp as one
        # Without a zone it is UTC, as YAML's own timestamps are, whatever this host's zone.
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    raise ValueError(f"expires must be a date and time (2027-01-31T00:00:00Z), got {value!r}")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AuthConfigError(f"{path}: cannot read it ({exc.strerror})") from None


def from_settings(settings: Settings) -> Verifier | None:
    """The configured verifier; None with no_auth. Raises AuthConfigError for an unusable file."""
    audience = settings.auth_audience or None
    if settings.auth_jwt_secret_file:
        return JwtVerifier.from_secret_file(Path(settings.auth_jwt_secret_file), audience)
    if settings.auth_jwt_public_key_file:
        return JwtVerifier.from_public_key_file(Path(settings.auth_jwt_public_key_file), audience)
    if settings.auth_tokens_file:
        return TokenFileVerifier.from_file(Path(settings.auth_tokens_file))
    return None


class Gatekeeper:
    """Who a handshake is: the configured verifier, or the pool's probe key."""

    def __init__(self, verifier: Verifier | None, probe_key: str | None) -> None:
        self.verifier = verifier
        self._probe_key = probe_key

    @property
    def enabled(self) -> bool:
        return self.verifier is not None

    def identify(self, token: str | None) -> Identity | None:
        """The token's identity; None when authentication is off. Raises AuthError."""
        if self.verifier is None:
            return None
        if token is None:
            raise AuthError(
                "missing",
                "no token: send Authorization: Bearer, or the subprotocols"
                f" {BEARER_PROTOCOL}, TOKEN",
            )
        if self._probe_key and hmac.compare_digest(token, self._probe_key):
            return PROBE_IDENTITY
        return self.verifier.verify(token)


def challenge(error: AuthError) -> str:
    """The WWW-Authenticate header of a 401 (RFC 6750): why, without the token."""
    if error.reason == "missing":
        return 'Bearer realm="wsmon"'
    return f'Bearer realm="wsmon", error="invalid_token", error_description="{error.reason}"'


def token_from(authorization: str | None, protocols: Sequence[str] = ()) -> str | None:
    """The token of a request: `Authorization: Bearer`; or Basic, the token as the password (a
    browser logged in to /testing sends it on the page's WebSockets too); else the subprotocol
    after `wsmon.bearer`. None when it carries none."""
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            return decoded.partition(":")[2] or None
    if BEARER_PROTOCOL in protocols:
        index = list(protocols).index(BEARER_PROTOCOL)
        if index + 1 < len(protocols):
            return protocols[index + 1]
    return None
