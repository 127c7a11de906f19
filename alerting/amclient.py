"""A small client for Alertmanager's v2 API: the alerts it holds and the silences that ack them.

Synchronous (urllib): `wsmon alerts` makes one or two requests and exits. An acknowledgement is a
silence whose matchers pick out the alert; Alertmanager then marks the alert suppressed and sends
no notification for it, repeats included, until the silence ends or is expired.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

from wsmon import httpjson
from wsmon.httpjson import json_object as _object

TIMEOUT: Final = 5.0

T = TypeVar("T")

# Alertmanager answered, but refused the request or gave an answer that is not its API's (not
# JSON, or JSON of the wrong shape); Unreachable: no HTTP answer at all. The shared client's
# errors, under the names `wsmon alerts` catches.
AlertmanagerError = httpjson.ApiError
Unreachable = httpjson.Unreachable


def check_url(url: str) -> str:
    """`url` if it is an http:// or https:// URL with a host (and a numeric port, if any);
    ValueError naming it otherwise (`localhost:9093` lacks the scheme)."""
    return httpjson.check_url(url, "http://127.0.0.1:9093")


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
        return [parse(raw) for raw in httpjson.json_list(payload)]

    return parse_list


class Client:
    def __init__(self, base_url: str, timeout: float = TIMEOUT) -> None:
        self.base_url = check_url(base_url).rstrip("/")
        self._api = httpjson.Api(
            self.base_url, "Alertmanager", "Alertmanager's v2 API", "/api/v2", timeout
        )

    def alerts(self) -> list[Alert]:
        """Every alert Alertmanager holds, silenced and inhibited ones included."""
        query = urllib.parse.urlencode(
            {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true"}
        )
        return self._api.call("GET", f"/alerts?{query}", _each(_alert))

    def silences(self) -> list[Silence]:
        return self._api.call("GET", "/silences", _each(_silence))

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
        return self._api.call(
            "POST", "/silences", lambda created: str(_object(created)["silenceID"]), body
        )

    def expire(self, silence_id: str) -> None:
        self._api.request("DELETE", f"/silence/{urllib.parse.quote(silence_id, safe='')}")
