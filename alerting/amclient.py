"""A small client for Alertmanager's v2 API: the alerts it holds and the silences that ack them.

Synchronous (urllib): `wsmon alerts` makes one or two requests and exits. An acknowledgement is a
silence whose matchers pick out the alert; Alertmanager then marks the alert suppressed and sends
no notification for it, repeats included, until the silence ends or is expired.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

TIMEOUT: Final = 5.0
SCHEMES: Final = ("http", "https")

T = TypeVar("T")


class AlertmanagerError(Exception):
    """Alertmanager answered, but refused the request or gave an answer that is not its API's
    (not JSON, or JSON of the wrong shape); the message carries the explanation."""


class Unreachable(AlertmanagerError):
    """No HTTP answer at all: wrong URL, Alertmanager down, or a network problem."""


def check_url(url: str) -> str:
    """`url` if it is an http:// or https:// URL with a host (and a numeric port, if any);
    ValueError naming it otherwise (`localhost:9093` lacks the scheme)."""
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # ValueError for a port that is not a number in 0..65535
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {url!r}: {exc}") from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError(f"not an http:// or https:// URL: {url!r} (e.g. http://127.0.0.1:9093)")
    return url


@dataclass(frozen=True)
class Alert:
    labels: dict[str, str]
    annotations: dict[str, str]
    silenced_by: tuple[str, ...]
    inhibited_by: tuple[str, ...]
    starts_at: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[tuple[str, str], ...]
    state: str  # active | pending | expired
    created_by: str
    comment: str
    ends_at: str


class _WrongShape(ValueError):
    """An answer whose JSON is not shaped as Alertmanager's v2 API documents it."""


def _object(raw: Any) -> Mapping[str, Any]:
    """`raw` as a JSON object; anything else is a wrongly shaped answer, said in our words."""
    if not isinstance(raw, dict):
        raise _WrongShape(f"expected a JSON object, got {_json_kind(raw)}")
    return raw


_JSON_KINDS: Final = (
    (dict, "an object"),
    (list, "a list"),
    (str, "a string"),
    (bool, "true or false"),
)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return next((name for kind, name in _JSON_KINDS if isinstance(value, kind)), "a number")


def _silence(raw: Any) -> Silence:
    raw = _object(raw)
    return Silence(
        id=raw["id"],
        matchers=tuple((_object(m)["name"], _object(m)["value"]) for m in raw["matchers"]),
        state=_object(raw["status"])["state"],
        created_by=raw.get("createdBy", ""),
        comment=raw.get("comment", ""),
        ends_at=raw["endsAt"],
    )


def _explain(error: urllib.error.HTTPError) -> str:
    """Alertmanager's reason for refusing: usually a JSON string ("silence not found")."""
    body = error.read().decode(errors="replace").strip()
    try:
        reason = json.loads(body)
    except ValueError:
        return body or str(error.reason)
    return reason if isinstance(reason, str) else body


def _alert(raw: Any) -> Alert:
    raw = _object(raw)
    status = _object(raw["status"])
    return Alert(
        labels=raw["labels"],
        annotations=raw.get("annotations", {}),
        silenced_by=tuple(status["silencedBy"]),
        inhibited_by=tuple(status["inhibitedBy"]),
        starts_at=raw["startsAt"],
    )


def _each(parse: Callable[[Any], T]) -> Callable[[Any], list[T]]:
    """Parse a JSON list item by item; a non-list is a wrongly shaped answer."""

    def parse_list(payload: Any) -> list[T]:
        if not isinstance(payload, list):
            raise _WrongShape(f"expected a JSON list, got {_json_kind(payload)}")
        return [parse(raw) for raw in payload]

    return parse_list


class Client:
    def __init__(self, base_url: str, timeout: float = TIMEOUT) -> None:
        self.base_url = check_url(base_url).rstrip("/")
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        """The decoded JSON answer (None for an empty one). Raises Unreachable without an HTTP
        answer, AlertmanagerError for a refusal or an answer that is not JSON."""
        data = None if body is None else json.dumps(body).encode()
        try:
            request = urllib.request.Request(
                f"{self.base_url}/api/v2{path}",
                data=data,
                method=method,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise AlertmanagerError(f"{method} {path}: HTTP {exc.code}: {_explain(exc)}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # ValueError: a URL urllib cannot use (check_url lets few of them through).
            reason = getattr(exc, "reason", None) or exc
            raise Unreachable(f"cannot reach Alertmanager at {self.base_url}: {reason}") from None
        except http.client.HTTPException:  # something answered, but not in HTTP
            raise Unreachable(
                f"cannot reach Alertmanager at {self.base_url}: what answers on that port does"
                " not speak HTTP (another service, or TLS where http:// was given?)"
            ) from None
        if not payload.strip():
            return None
        try:
            return json.loads(payload)
        except ValueError:
            start = payload[:60].decode(errors="replace").strip()
            raise AlertmanagerError(
                f"{method} {path}: the answer from {self.base_url} is not JSON, so not from"
                f" Alertmanager's v2 API (a proxy or another service?); it starts: {start!r}"
            ) from None

    def _call(self, method: str, path: str, parse: Callable[[Any], T], body: Any = None) -> T:
        """`_request`, then `parse` the answer; an answer of the wrong shape (missing fields,
        a list where an object belongs) is an AlertmanagerError, not a KeyError."""
        payload = self._request(method, path, body)
        try:
            return parse(payload)
        except (KeyError, _WrongShape) as exc:
            problem = f"no field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise AlertmanagerError(
                f"{method} {path}: the answer from {self.base_url} is not what Alertmanager's"
                f" v2 API returns ({problem}); is this Alertmanager?"
            ) from None

    def alerts(self) -> list[Alert]:
        """Every alert Alertmanager holds, silenced and inhibited ones included."""
        query = urllib.parse.urlencode(
            {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true"}
        )
        return self._call("GET", f"/alerts?{query}", _each(_alert))

    def silences(self) -> list[Silence]:
        return self._call("GET", "/silences", _each(_silence))

    def silence(
        self,
        matchers: Mapping[str, str],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
    ) -> str:
        """Create a silence matching every label exactly; returns its id."""
        body = {
            "matchers": [
                {"name": name, "value": value, "isRegex": False, "isEqual": True}
                for name, value in matchers.items()
            ],
            "startsAt": starts_at.isoformat(),
            "endsAt": ends_at.isoformat(),
            "createdBy": created_by,
            "comment": comment,
        }
        return self._call(
            "POST", "/silences", lambda created: str(_object(created)["silenceID"]), body
        )

    def expire(self, silence_id: str) -> None:
        self._request("DELETE", f"/silence/{urllib.parse.quote(silence_id, safe='')}")
