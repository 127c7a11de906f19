"""The /ws wire contract, without I/O: message types, validation, error codes, outgoing frames.

Everything here is a plain function of its inputs so it can be tested without sockets
(docs/protocol.md is the user-facing description of the same contract).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

# Re-exported: the handlers, the metrics and the read loop name them through this module.
from wsmon.catalogue import CLIENT_TYPES as CLIENT_TYPES
from wsmon.catalogue import INVALID as INVALID

# Types a client may send (the catalogue's, as they are label values); anything else is counted
# under the label INVALID.
RECEIVED_TYPES: Final = (*CLIENT_TYPES, INVALID)
# Types the server sends; deliveries reuse the client's type name.
SENT_TYPES: Final = (
    "welcome",
    "echo",
    "pong",
    "ack",
    "error",
    "chat",
    "notify",
    "publish",
    "broadcast",
)

# Error codes: the `code` field of an error frame and the `reason` label of its counter.
INVALID_JSON: Final = "invalid_json"
NOT_AN_OBJECT: Final = "not_an_object"
UNKNOWN_TYPE: Final = "unknown_type"
MISSING_FIELD: Final = "missing_field"
INVALID_FIELD: Final = "invalid_field"
BINARY_FRAME: Final = "binary_frame"
RATE_LIMITED: Final = "rate_limited"
NOT_IN_ROOM: Final = "not_in_room"
TOO_MANY_MEMBERSHIPS: Final = "too_many_memberships"
TOO_LARGE: Final = "too_large"
INVALID_FRAME: Final = "invalid_frame"
FORBIDDEN: Final = "forbidden"  # the token does not allow it (a role, a room or topic prefix)
# Every code above is the client's doing (wsmon_client_errors_total). This one is the server's: a
# handler raised something other than ProtocolError (wsmon_message_failures_total), and only this
# kind of failure counts against the message success rate, its alerts and /api/health.
INTERNAL_ERROR: Final = "internal_error"

MAX_NAME_LENGTH: Final = 128
MAX_ID_LENGTH: Final = 128

MessageId = str | int | None


class ProtocolError(Exception):
    """A message the server refuses for the client's fault; one error frame, one client error."""

    def __init__(self, message_type: str, code: str, message: str, ref: MessageId = None):
        super().__init__(message)
        self.message_type = message_type
        self.code = code
        self.message = message
        self.ref = ref


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _is_anything(value: Any) -> bool:
    return True


@dataclass(frozen=True)
class Field:
    name: str
    check: Callable[[Any], bool]
    requirement: str
    required: bool = True


_ROOM = Field("room", _is_name, f"a string of 1-{MAX_NAME_LENGTH} characters")
_TOPIC = Field("topic", _is_name, f"a string of 1-{MAX_NAME_LENGTH} characters")
_USER = Field("user", _is_name, f"a string of 1-{MAX_NAME_LENGTH} characters")
_TEXT = Field("text", _is_text, "a string")
_PAYLOAD = Field("payload", _is_anything, "any JSON value", required=False)

FIELDS: Final[dict[str, tuple[Field, ...]]] = {
    "echo": (),
    "ping": (),
    "identify": (_USER,),
    "join": (_ROOM,),
    "leave": (_ROOM,),
    "chat": (_ROOM, _TEXT),
    "notify": (_USER, _PAYLOAD),
    "subscribe": (_TOPIC,),
    "unsubscribe": (_TOPIC,),
    "publish": (_TOPIC, _PAYLOAD),
    "broadcast": (_PAYLOAD,),
}
assert set(FIELDS) == set(CLIENT_TYPES)


_loads = orjson.loads
_KNOWN_TYPES = ", ".join(CLIENT_TYPES)


def _unknown_type(obj: dict[str, Any], message_type: Any) -> ProtocolError:
    ref = obj.get("id")
    # Echoed only when it is an id the protocol accepts (docs/protocol.md): else null.
    usable = type(ref) is int or (type(ref) is str and len(ref) <= MAX_ID_LENGTH)
    ref = ref if usable else None
    if message_type is None:
        return ProtocolError(INVALID, MISSING_FIELD, "type: missing", ref)
    known = _KNOWN_TYPES
    return ProtocolError(
        INVALID, UNKNOWN_TYPE, f"type: unknown type {message_type!r}; known: {known}", ref
    )


def parse(text: str | bytes) -> tuple[str, dict[str, Any], MessageId]:
    """Decode and validate one text frame: (type, message object, id) or ProtocolError.

    On the per-message path: exact `type(...) is` checks instead of isinstance, and no work for
    fields a type does not have.
    """
    try:
        obj = _loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(INVALID, INVALID_JSON, f"not valid JSON: {exc}") from None
    if type(obj) is not dict:
        raise ProtocolError(INVALID, NOT_AN_OBJECT, "a message must be a JSON object with a type")
    try:
        # KeyError: no such type (or none at all); TypeError: an unhashable type such as a list.
        fields = FIELDS[obj["type"]]
    except (KeyError, TypeError):
        raise _unknown_type(obj, obj.get("type")) from None
    message_type: str = obj["type"]
    ref = obj.get("id")
    if (
        ref is not None
        and type(ref) is not int
        and (type(ref) is not str or len(ref) > MAX_ID_LENGTH)
    ):
        raise ProtocolError(
            message_type,
            INVALID_FIELD,
            f"id: must be an integer or a string of at most {MAX_ID_LENGTH} characters",
        )
    for field in fields:
        if field.name not in obj:
            if field.required:
                raise ProtocolError(message_type, MISSING_FIELD, f"{field.name}: missing", ref)
        elif not field.check(obj[field.name]):
            raise ProtocolError(
                message_type, INVALID_FIELD, f"{field.name}: must be {field.requirement}", ref
            )
    return message_type, obj, ref


# Outgoing frames. orjson gives bytes, which is what the socket and the relay carry.


def welcome(connection_id: str, worker: int) -> bytes:
    return orjson.dumps({"type": "welcome", "connection_id": connection_id, "worker": worker})


def ack(ref: MessageId) -> bytes:
    return orjson.dumps({"type": "ack", "id": ref})


def pong(ref: MessageId) -> bytes:
    if ref is None:
        return b'{"type":"pong"}'
    return orjson.dumps({"type": "pong", "id": ref})


def error(code: str, message: str, ref: MessageId = None) -> bytes:
    return orjson.dumps({"type": "error", "code": code, "message": message, "ref": ref})


def delivery(message_type: str, sender: str, obj: dict[str, Any], ref: MessageId) -> bytes:
    """The frame recipients get: the sender's message minus its id, plus who sent it.

    orjson reads JSON nested up to 1024 levels deep but writes at most 255: a message nested
    deeper than that is refused here rather than failing the connection.
    """
    out = {key: value for key, value in obj.items() if key != "id"}
    out["type"] = message_type
    out["from"] = sender
    try:
        return orjson.dumps(out)
    except orjson.JSONEncodeError:
        raise ProtocolError(
            message_type, INVALID_FIELD, "too deeply nested to deliver", ref
        ) from None
