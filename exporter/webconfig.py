"""The operational listener's web config file, in the format of Prometheus' --web.config.file.

One file protects /metrics, /healthz, /readyz and /probe the way Prometheus protects its own
endpoints: TLS, client certificates and basic auth with bcrypt hashes. It is the exporter-toolkit
format (https://prometheus.io/docs/prometheus/latest/configuration/https/), so a file written
for Prometheus or an exporter, and checked with `promtool check web-config`, works here; what
wsmon cannot do the way Go does is an error at load, never silently different behaviour:

- `tls_server_config`: `cert_file` and `key_file` (both required once the section has any key;
  relative paths are taken from the config file's folder, as the toolkit does), `client_auth_type`
  (`NoClientCert`, `VerifyClientCertIfGiven`, `RequireAndVerifyClientCert`), `client_ca_file`
  or the inline `client_ca`, `min_version`/`max_version` (TLS10..TLS13, default TLS12..TLS13) and
  `prefer_server_cipher_suites` (OpenSSL's server-preference option). Refused: `RequestClientCert`
  and `RequireAnyClientCert` (Python's ssl cannot ask for a certificate without verifying it),
  the verifying types without a client CA (Go falls back to the system's CAs, which would let any
  publicly trusted certificate in), the inline `cert`/`key` (Python's ssl reads a key from a
  file only, and a key is not worth a temporary copy), `cipher_suites` and `curve_preferences`
  (Go names; OpenSSL picks its defaults) and `client_allowed_sans`.
- `http_server_config`: `http2` is accepted and ignored (aiohttp serves HTTP/1.1); `headers`
  takes the toolkit's five headers with its allowed values, set on every answer, 401 included.
- `basic_auth_users`: user -> bcrypt hash (`$2a$`, `$2b$`, `$2y$`; `wsmon auth hash-password`).
- `rate_limit` (newer toolkits) is refused: wsmon has no limiter on this listener.

Stricter than promtool 2.42 too: TLS settings without a certificate (the toolkit then serves plain
HTTP), min_version above max_version, a `$2x$` hash and a user name YAML reads as a number are
refused. OpenSSL's security level may refuse TLS10/TLS11 whatever min_version says. The file is
read once, unlike the toolkit's per-request reads: load it again to pick up a renewed certificate.

bcrypt is slow on purpose (about 250 ms a check at cost 12), so verdicts are cached as the
toolkit's are, by user, password digest and hash (least recently used out past CACHE_SIZE): a
scraper costs one check in all. An unknown user is checked against a dummy hash of the same cost,
so timing does not tell which users exist; a cache miss runs in a thread (check_async).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import difflib
import hashlib
import re
import ssl
import threading
import types
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bcrypt
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from wsmon.yamlfile import YamlFileError, read_yaml, shown

REALM = "wsmon"
CACHE_SIZE = 1000
# bcrypt reads at most 72 bytes of a password; Go's bcrypt (the toolkit's) and htpasswd ignore
# the rest, while Python's bcrypt 5 raises. Cutting it here keeps their hashes working.
BCRYPT_MAX_PASSWORD = 72
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_VERSION_NAMES = {version: name for name, version in TLS_VERSIONS.items()}
CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
# The toolkit allows exactly these headers, some with a fixed set of values (its handler.go).
HEADER_VALUES: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "client_ca",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
)
_HTTP_KEYS = ("http2", "headers")
_OPENSSL_DEFAULTS = "not supported by wsmon (Python's ssl picks OpenSSL's defaults)"
# Toolkit keys wsmon knows and refuses, with why.
_UNSUPPORTED = {
    "rate_limit": "not supported by wsmon (this listener has no rate limiter)",
    "tls_server_config.cert": "not supported by wsmon: put the certificate in cert_file",
    "tls_server_config.key": "not supported by wsmon: put the key in key_file",
    "tls_server_config.cipher_suites": _OPENSSL_DEFAULTS,
    "tls_server_config.curve_preferences": _OPENSSL_DEFAULTS,
    "tls_server_config.client_allowed_sans": (
        "not supported by wsmon: any certificate client_ca_file's CA signed is let in"
    ),
}


class WebConfigError(ValueError):
    """The web config file is wrong: the message names the file, the key and the problem."""


class _EncryptedKey(Exception):
    """load_cert_chain asked for a passphrase."""


def _no_passphrase() -> str:
    raise _EncryptedKey


def _basic_credentials(authorization: str) -> tuple[str, bytes] | None:
    """(user, password) from an `Authorization: Basic ...` value, None if it is not one."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, colon, password = base64.b64decode(encoded, validate=True).partition(b":")
        return (user.decode(), password) if colon else None
    except (binascii.Error, UnicodeDecodeError):
        return None


class _Attempt:
    """A check the cache could not answer: one bcrypt comparison to make."""

    __slots__ = ("hashed", "key", "known", "password")

    def __init__(self, key: tuple[str, bytes, bytes], password: bytes, hashed: bytes, known: bool):
        self.key, self.password, self.hashed, self.known = key, password, hashed, known


class WebConfig:
    """What a web config file asks for; WebConfig() is an empty file: no TLS, no auth."""

    def __init__(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        users: Mapping[str, bytes] | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.headers: Mapping[str, str] = types.MappingProxyType(dict(headers or {}))
        self._users = dict(users or {})
        self._context = context
        # An unknown user is compared with a hash of the highest cost configured, so that the
        # answer takes as long as for a known one and timing does not tell which users exist.
        cost = max((int(h[4:6]) for h in self._users.values()), default=4)
        self._dummy = b"$2b$%02d$" % cost + b"." * 53
        self._verdicts: OrderedDict[tuple[str, bytes, bytes], bool] = OrderedDict()
        self._cache_lock = threading.Lock()
        # One bcrypt at a time, as the toolkit does: a burst of bad logins costs one core.
        self._bcrypt_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WebConfig(tls={self._context is not None}, users={len(self._users)})"

    @property
    def basic_auth(self) -> bool:
        """Whether the file lists users, so that every request must name one."""
        return bool(self._users)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server-side TLS context (certificate already loaded), None for plain HTTP."""
        return self._context

    def check(self, authorization: str | None) -> bool:
        """Whether the Authorization header lets the request in (always, with no users)."""
        verdict = self._lookup(authorization)
        return verdict if isinstance(verdict, bool) else self._compare(verdict)

    async def check_async(self, authorization: str | None) -> bool:
        """check() with bcrypt (~250 ms at cost 12) in a thread, off the event loop."""
        verdict = self._lookup(authorization)
        if isinstance(verdict, bool):
            return verdict
        return await asyncio.to_thread(self._compare, verdict)

    def middleware(self) -> Middleware:
        """Basic auth (401 with WWW-Authenticate) and the configured headers on every answer."""
        headers = dict(self.headers)
        challenge = {hdrs.WWW_AUTHENTICATE: f'Basic realm="{REALM}"', **headers}

        @web.middleware
        async def web_config(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not await self.check_async(request.headers.get(hdrs.AUTHORIZATION)):
                return web.Response(status=401, text="401 Unauthorized\n", headers=challenge)
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # 404 and friends are answers too
                exc.headers.update(headers)
                raise
            if not response.prepared:  # a streamed answer has sent its headers already
                response.headers.update(headers)
            return response

        return web_config

    def _lookup(self, authorization: str | None) -> bool | _Attempt:
        """The verdict if it needs no bcrypt, else the comparison to make."""
        if not self._users:
            return True
        credentials = _basic_credentials(authorization) if authorization else None
        if credentials is None:
            return False
        user, password = credentials
        password = password[:BCRYPT_MAX_PASSWORD]
        known = user in self._users
        hashed = self._users.get(user, self._dummy)
        # The password itself is not kept: its digest is enough to find the verdict again.
        key = (user, hashlib.sha256(password).digest(), hashed)
        with self._cache_lock:
            cached = self._verdicts.get(key)
            if cached is not None:
                self._verdicts.move_to_end(key)
                return cached
        return _Attempt(key, password, hashed, known)

    def _compare(self, attempt: _Attempt) -> bool:
        with self._bcrypt_lock:
            with self._cache_lock:  # the thread before this one may have just compared it
                cached = self._verdicts.get(attempt.key)
            if cached is not None:
                return cached
            try:  # checkpw compares in constant time
                verdict = bcrypt.checkpw(attempt.password, attempt.hashed) and attempt.known
            except ValueError:  # a NUL byte, say: not a password anyone configured
                verdict = False
        with self._cache_lock:
            self._verdicts[attempt.key] = verdict
            self._verdicts.move_to_end(attempt.key)
            while len(self._verdicts) > CACHE_SIZE:
                self._verdicts.popitem(last=False)
        return verdict


def _header_text(value: Any) -> str | None:
    """A header's value as the toolkit's YAML reads it: `X-XSS-Protection: 0` is the text "0"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    return None  # a float's text is not what was written (1.50 reads as 1.5)


class _Reader:
    """Checks one file's document, with errors that name the file and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, problem: str) -> WebConfigError:
        return WebConfigError(f"{self.path}: {key}: {problem}")

    def section(self, data: Any, name: str, known: tuple[str, ...]) -> dict[str, Any]:
        """A mapping whose keys are all known (None and {} are empty)."""
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise WebConfigError(
                f"{self.path}: {name or 'the file'} must be a mapping, got {type(data).__name__}"
            )
        for key in data:
            dotted = f"{name}.{key}" if name else str(key)
            if dotted in _UNSUPPORTED:
                raise self.error(dotted, _UNSUPPORTED[dotted])
            if key not in known:
                prefix = f"{name}." if name else ""
                refused = [k.removeprefix(prefix) for k in _UNSUPPORTED if k.startswith(prefix)]
                names = [*known, *(k for k in refused if "." not in k)]
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.error(dotted, f"unknown key{hint}; known keys: {', '.join(known)}")
        return data

    def string(self, data: dict[str, Any], section: str, key: str) -> str | None:
        value = data.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.error(f"{section}.{key}", f"must be a string, got {shown(value)}")
        return value

    def boolean(self, data: dict[str, Any], section: str, key: str) -> None:
        value = data.get(key)
        if value is not None and not isinstance(value, bool):
            raise self.error(f"{section}.{key}", f"must be true or false, got {shown(value)}")

    def file(self, data: dict[str, Any], key: str) -> Path | None:
        """A file the TLS section names, relative to the config file's folder, as the toolkit."""
        name = self.string(data, "tls_server_config", key)
        if name is None:
            return None
        path = self.path.parent / name
        if not path.is_file():
            raise self.error(f"tls_server_config.{key}", f"no such file {path}")
        return path

    def version(self, data: dict[str, Any], key: str, default: str) -> ssl.TLSVersion:
        name = self.string(data, "tls_server_config", key) or default
        if name not in TLS_VERSIONS:
            raise self.error(
                f"tls_server_config.{key}",
                f"unknown TLS version {shown(name)}; one of: {', '.join(TLS_VERSIONS)}",
            )
        return TLS_VERSIONS[name]

    def context(self, data: Any) -> ssl.SSLContext | None:
        tls = self.section(data, "tls_server_config", _TLS_KEYS)
        if not tls:
            return None
        cert = self.file(tls, "cert_file")
        key = self.file(tls, "key_file")
        if cert is None:
            raise self.error("tls_server_config.cert_file", "missing (TLS needs a certificate)")
        if key is None:
            raise self.error("tls_server_config.key_file", "missing (TLS needs the key)")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(cert, key, password=_no_passphrase)
        except _EncryptedKey:
            raise self.error("tls_server_config.key_file", f"{key} is encrypted") from None
        except (OSError, ssl.SSLError) as exc:
            raise self.error(
                "tls_server_config.cert_file",
                f"cannot load {cert} with the key {key} (not PEM, or not a pair?): {exc}",
            ) from None
        lowest = self.version(tls, "min_version", "TLS12")
        highest = self.version(tls, "max_version", "TLS13")
        if lowest > highest:
            raise self.error(
                "tls_server_config.min_version",
                f"{_VERSION_NAMES[lowest]} is above max_version {_VERSION_NAMES[highest]}",
            )
        context.minimum_version, context.maximum_version = lowest, highest
        self.boolean(tls, "tls_server_config", "prefer_server_cipher_suites")
        if tls.get("prefer_server_cipher_suites") is False:
            context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        else:  # the toolkit's default is true
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        self.client_auth(tls, context)
        return context

    def client_auth(self, tls: dict[str, Any], context: ssl.SSLContext) -> None:
        where = "tls_server_config.client_auth_type"
        kind = self.string(tls, "tls_server_config", "client_auth_type") or "NoClientCert"
        ca_file = self.file(tls, "client_ca_file")
        ca_text = self.string(tls, "tls_server_config", "client_ca")
        if kind in _UNVERIFIED_CLIENT_AUTH:
            raise self.error(
                where,
                f"{kind} is not supported by wsmon: Python's ssl cannot take a client certificate"
                " without verifying it; use RequireAndVerifyClientCert with client_ca_file",
            )
        if kind not in CLIENT_AUTH_TYPES:
            close = difflib.get_close_matches(kind, CLIENT_AUTH_TYPES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error(
                where, f"unknown {shown(kind)}{hint}; one of: {', '.join(CLIENT_AUTH_TYPES)}"
            )
        context.verify_mode = CLIENT_AUTH_TYPES[kind]
        if kind == "NoClientCert":
            if ca_file or ca_text:  # the toolkit refuses a CA nothing would use
                raise self.error(where, "a client CA is configured but client_auth_type is not")
            return
        if ca_file is None and ca_text is None:
            raise self.error("tls_server_config.client_ca_file", f"required with {kind}")
        try:
            context.load_verify_locations(cafile=ca_file, cadata=ca_text)
        except (OSError, ssl.SSLError) as exc:
            key = "client_ca_file" if ca_file else "client_ca"
            raise self.error(
                f"tls_server_config.{key}", f"no CA certificate in it: {exc}"
            ) from None

    def headers(self, data: Any) -> dict[str, str]:
        http = self.section(data, "http_server_config", _HTTP_KEYS)
        self.boolean(http, "http_server_config", "http2")
        headers = http.get("headers") or {}
        if not isinstance(headers, dict):
            raise self.error("http_server_config.headers", "must be a mapping of header: value")
        result: dict[str, str] = {}
        for name, value in headers.items():
            where = f"http_server_config.headers.{name}"
            if name not in HEADER_VALUES:
                close = difflib.get_close_matches(str(name), HEADER_VALUES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                known = ", ".join(HEADER_VALUES)
                raise self.error(where, f"this header cannot be configured{hint}; only: {known}")
            value = _header_text(value)
            if value is None:
                raise self.error(where, "must be a string (quote it)")
            if any(c in value for c in "\r\n\0"):
                raise self.error(where, "must be one line")
            allowed = HEADER_VALUES[name]
            if allowed and value not in allowed:
                raise self.error(where, f"must be one of {', '.join(allowed)}, got {shown(value)}")
            if value:  # blank: not set, as the toolkit documents
                result[name] = value
        return result

    def users(self, data: Any) -> dict[str, bytes]:
        users: dict[str, bytes] = {}
        if data is None:
            return users
        if not isinstance(data, dict):
            raise self.error("basic_auth_users", "must be a mapping of user: bcrypt hash")
        for user, hashed in data.items():
            where = f"basic_auth_users.{user}"
            if not isinstance(user, str):
                raise self.error(where, "a user name must be a string (quote it)")
            # The value is not quoted back: a value that is not a hash may be a password.
            if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed):
                raise self.error(
                    where,
                    "not a bcrypt hash ($2a$, $2b$ or $2y$, cost 04 to 31, 60 characters);"
                    " make one with `wsmon auth hash-password`",
                )
            users[user] = hashed.encode()
        return users


def load(path: Path) -> WebConfig:
    """Read and check a web config file; the TLS certificate and key are loaded here."""
    try:
        document = read_yaml(path, "web config file")
    except YamlFileError as exc:
        raise WebConfigError(str(exc)) from None
    reader = _Reader(path)
    data = reader.section(document, "", _TOP_KEYS)
    return WebConfig(
        headers=reader.headers(data.get("http_server_config")),
        users=reader.users(data.get("basic_auth_users")),
        context=reader.context(data.get("tls_server_config")),
    )
