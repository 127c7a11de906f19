"""A small client for Alertmanager's v2 API: the alerts it holds and the silences that ack them.

Synchronous (urllib): `wsmon alerts` makes one or two requests and exits. An acknowledgement is a
silence whose matchers pick out the alert; Alertmanager then marks the alert suppressed and sends
no notification for it, repeats included, until the silence ends or is expired.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

TIMEOUT: Final = 5.0


class AlertmanagerError(Exception):
    """Alertmanager answered, but refused the request; the message carries its explanation."""


class Unreachable(AlertmanagerError):
    """No answer at all: wrong URL, Alertmanager down, or a network problem."""


@dataclass(frozen=True)
class Alert:
    labels: dict[str, str]
    annotations: dict[str, str]
    state: str  # active | suppressed | unprocessed
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


def _silence(raw: Mapping[str, Any]) -> Silence:
    return Silence(
        id=raw["id"],
        matchers=tuple((m["name"], m["value"]) for m in raw["matchers"]),
        state=raw["status"]["state"],
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


class Client:
    def __init__(self, base_url: str, timeout: float = TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base_url}/api/v2{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise AlertmanagerError(f"{method} {path}: HTTP {exc.code}: {_explain(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"cannot reach Alertmanager at {self.base_url}: {reason}") from None
        return json.loads(payload) if payload.strip() else None

    def alerts(self) -> list[Alert]:
        """Every alert Alertmanager holds, silenced and inhibited ones included."""
        query = urllib.parse.urlencode(
            {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true"}
        )
        return [
            Alert(
                labels=raw["labels"],
                annotations=raw.get("annotations", {}),
                state=raw["status"]["state"],
                silenced_by=tuple(raw["status"]["silencedBy"]),
                inhibited_by=tuple(raw["status"]["inhibitedBy"]),
                starts_at=raw["startsAt"],
            )
            for raw in self._request("GET", f"/alerts?{query}")
        ]

    def silences(self) -> list[Silence]:
        return [_silence(raw) for raw in self._request("GET", "/silences")]

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
        created: dict[str, str] = self._request("POST", "/silences", body)
        return created["silenceID"]

    def expire(self, silence_id: str) -> None:
        self._request("DELETE", f"/silence/{urllib.parse.quote(silence_id, safe='')}")
