"""JSON over HTTP with the standard library, for the commands that talk to a monitoring API.

`wsmon alerts` (Alertmanager's v2 API) and `wsmon export` (Prometheus' v1 API) make a few
synchronous requests and exit, so urllib is enough. What they share is how a failure reads: no
HTTP answer at all is `Unreachable` (the commands exit 2 for it), a refusal or an answer that is
not the API's is an `ApiError` whose message names the request and says what came back instead.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

SCHEMES: Final = ("http", "https")

T = TypeVar("T")


class ApiError(Exception):
    """The service answered, but refused the request or gave an answer that is not its API's
    (not JSON, or JSON of the wrong shape); the message carries the explanation."""


class Unreachable(ApiError):
    """No HTTP answer at all: wrong URL, the service down, or a network problem."""


class WrongShape(ValueError):
    """An answer whose JSON is not shaped as the API documents it (raised by parsers)."""


def check_url(url: str, example: str) -> str:
    """`url` if it is an http:// or https:// URL with a host (and a numeric port, if any);
    ValueError naming it otherwise (`localhost:9093` lacks the scheme). `example` is a URL
    the message offers instead."""
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # ValueError for a port that is not a number in 0..65535
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {url!r}: {exc}") from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError(f"not an http:// or https:// URL: {url!r} (e.g. {example})")
    return url


_JSON_KINDS: Final = (
    (dict, "an object"),
    (list, "a list"),
    (str, "a string"),
    (bool, "true or false"),
)


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, in words for an error message."""
    if value is None:
        return "null"
    return next((name for kind, name in _JSON_KINDS if isinstance(value, kind)), "a number")


def json_object(raw: Any) -> Mapping[str, Any]:
    """`raw` as a JSON object; anything else is a wrongly shaped answer, said in our words."""
    if not isinstance(raw, dict):
        raise WrongShape(f"expected a JSON object, got {json_kind(raw)}")
    return raw


def json_list(raw: Any) -> list[Any]:
    """`raw` as a JSON list; anything else is a wrongly shaped answer."""
    if not isinstance(raw, list):
        raise WrongShape(f"expected a JSON list, got {json_kind(raw)}")
    return raw


def _explain(error: urllib.error.HTTPError) -> str:
    """The service's reason for refusing: Alertmanager sends a JSON string ("silence not
    found"), Prometheus an object whose `error` says it; otherwise the body as it is."""
    body = error.read().decode(errors="replace").strip()
    try:
        reason = json.loads(body)
    except ValueError:
        return body or str(error.reason)
    if isinstance(reason, dict) and isinstance(reason.get("error"), str):
        return str(reason["error"])
    return reason if isinstance(reason, str) else body


@dataclass(frozen=True)
class Api:
    """One service's JSON API: `base_url` as the user gave it, `prefix` the API's path under
    it (left out of messages, which quote requests as the API's documentation writes them)."""

    base_url: str
    service: str  # "Alertmanager": who cannot be reached
    name: str  # "Alertmanager's v2 API": what an impostor's answer is not from
    prefix: str = ""
    timeout: float = 5.0

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The decoded JSON answer (None for an empty one). Raises Unreachable without an HTTP
        answer, ApiError for a refusal or an answer that is not JSON."""
        data = None if body is None else json.dumps(body).encode()
        try:
            request = urllib.request.Request(
                f"{self.base_url}{self.prefix}{path}",
                data=data,
                method=method,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(f"{method} {path}: HTTP {exc.code}: {_explain(exc)}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # ValueError: a URL urllib cannot use (check_url lets few of them through).
            reason = getattr(exc, "reason", None) or exc
            raise Unreachable(f"cannot reach {self.service} at {self.base_url}: {reason}") from None
        except http.client.HTTPException:  # something answered, but not in HTTP
            raise Unreachable(
                f"cannot reach {self.service} at {self.base_url}: what answers on that port does"
                " not speak HTTP (another service, or TLS where http:// was given?)"
            ) from None
        if not payload.strip():
            return None
        try:
            return json.loads(payload)
        except ValueError:
            start = payload[:60].decode(errors="replace").strip()
            raise ApiError(
                f"{method} {path}: the answer from {self.base_url} is not JSON, so not from"
                f" {self.name} (a proxy or another service?); it starts: {start!r}"
            ) from None

    def call(self, method: str, path: str, parse: Callable[[Any], T], body: Any = None) -> T:
        """`request`, then `parse` the answer; an answer of the wrong shape (missing fields,
        a list where an object belongs) is an ApiError, not a KeyError."""
        payload = self.request(method, path, body)
        try:
            return parse(payload)
        except (KeyError, WrongShape) as exc:
            problem = f"no field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ApiError(
                f"{method} {path}: the answer from {self.base_url} is not what {self.name}"
                f" returns ({problem}); is this {self.service}?"
            ) from None
