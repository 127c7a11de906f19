"""Property tests of the /ws wire contract (docs/protocol.md), with Hypothesis.

Two layers. The sans-I/O core (exporter/protocol.py): any bytes, text or JSON give a parsed
message or a ProtocolError with a documented code, never another exception, and the outcome is the
one an independent model of the documented contract predicts. The real handlers, in-process (a
standalone worker under aiohttp's test server, as in test_app.py): a random sequence of frames on
one connection gets exactly the documented replies in order, the connection stays open unless the
protocol says it closes, and the worker's counters equal what the sequence implies.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis_profile
import orjson
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from support.polling import eventually
from support.standalone import WORKER, standalone_app

from wsmon.exporter import protocol
from wsmon.exporter.config import Settings
from wsmon.exporter.metrics import values
from wsmon.exporter.protocol import MessageId, ProtocolError

# --- The contract, restated from docs/protocol.md (not imported from protocol.py, so the model
# --- checks the code instead of repeating it).

MAX_NAME = 128
MAX_ID = 128
NAME, TEXT, ANY = "name", "text", "any"
# type -> {field: (kind, required)}, the table of client messages.
SCHEMA: dict[str, dict[str, tuple[str, bool]]] = {
    "echo": {},
    "ping": {},
    "identify": {"user": (NAME, True)},
    "join": {"room": (NAME, True)},
    "leave": {"room": (NAME, True)},
    "chat": {"room": (NAME, True), "text": (TEXT, True)},
    "notify": {"user": (NAME, True), "payload": (ANY, False)},
    "subscribe": {"topic": (NAME, True)},
    "unsubscribe": {"topic": (NAME, True)},
    "publish": {"topic": (NAME, True), "payload": (ANY, False)},
    "broadcast": {"payload": (ANY, False)},
}
# The codes parse() may raise: everything in the client-error table that needs no connection state.
PARSE_CODES = {"invalid_json", "not_an_object", "missing_field", "unknown_type", "invalid_field"}
FANOUT = ("chat", "notify", "publish", "broadcast")


def usable_id(value: Any) -> bool:
    """An integer (not a bool) or a string of at most 128 characters."""
    return type(value) is int or (type(value) is str and len(value) <= MAX_ID)


def fits(kind: str, value: Any) -> bool:
    if kind == NAME:
        return isinstance(value, str) and 1 <= len(value) <= MAX_NAME
    if kind == TEXT:
        return isinstance(value, str)
    return True


@dataclass(frozen=True)
class Accepted:
    message_type: str
    ref: MessageId


@dataclass(frozen=True)
class Refused:
    counted_as: str  # the `type` label of its client error
    # Every (code, field it names) the contract allows: the docs do not order the checks, so a
    # message with two problems may be refused for either.
    problems: frozenset[tuple[str, str | None]]
    ref: MessageId


def expect(obj: Any) -> Accepted | Refused:
    """What the contract says one decoded JSON frame gets."""
    if not isinstance(obj, dict):
        return Refused("invalid", frozenset({("not_an_object", None)}), None)
    raw_id = obj.get("id")
    ref = raw_id if usable_id(raw_id) else None
    message_type = obj.get("type")
    if message_type is None:
        # "type": null is no type too; either reading of it is a fair refusal.
        problems = {("missing_field", "type")}
        if "type" in obj:
            problems.add(("unknown_type", "type"))
        return Refused("invalid", frozenset(problems), ref)
    if not (isinstance(message_type, str) and message_type in SCHEMA):
        return Refused("invalid", frozenset({("unknown_type", "type")}), ref)
    found: set[tuple[str, str | None]] = set()
    # An id of null is read as no id (the server sends no ack for it).
    if raw_id is not None and not usable_id(raw_id):
        found.add(("invalid_field", "id"))
    for name, (kind, required) in SCHEMA[message_type].items():
        if name not in obj:
            if required:
                found.add(("missing_field", name))
        elif not fits(kind, obj[name]):
            found.add(("invalid_field", name))
    if found:
        return Refused(message_type, frozenset(found), ref)
    return Accepted(message_type, ref)


def names_field(problem: tuple[str, str | None], message: str) -> bool:
    """The error's `message` names the field its code is about ("room: missing")."""
    return problem[1] is None or message.startswith(f"{problem[1]}:")


def matches(refused: Refused, exc: ProtocolError) -> bool:
    return (
        exc.message_type == refused.counted_as
        and exc.ref == refused.ref
        and any(
            code == exc.code and names_field((code, f), exc.message) for code, f in refused.problems
        )
    )


# --- Strategies.

# orjson writes integers of -2**63 .. 2**64-1 (larger ones it reads as floats) and no NaN/inf.
json_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
json_floats = st.floats(allow_nan=False, allow_infinity=False)
json_scalars = st.none() | st.booleans() | json_ints | json_floats | st.text(max_size=12)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    return st.recursive(
        json_scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
        max_leaves=max_leaves,
    )


# Built once and shared: a strategy made inside a draw is validated again on every example.
payload_values = json_values()
small_values = json_values(4)


def long_texts(lengths: st.SearchStrategy[int]) -> st.SearchStrategy[str]:
    """Texts of exactly these lengths, from a short random text repeated: Hypothesis draws each
    character of a text separately, and 128 draws per name would cost more than the property."""
    return st.builds(lambda unit, n: (unit * n)[:n], st.text(min_size=1, max_size=3), lengths)


non_strings = (
    st.none() | st.booleans() | json_ints | json_floats | st.lists(json_scalars, max_size=2)
)
valid_ids = json_ints | st.text(max_size=8) | long_texts(st.integers(MAX_ID - 1, MAX_ID))
overlong_ids = long_texts(st.integers(MAX_ID + 1, MAX_ID + 3))
# Unusable ids that are not strings; over-long string ids have a regression test (below).
bad_id_values = st.booleans() | json_floats | st.lists(json_scalars, max_size=2)
unknown_types = st.text(max_size=12).filter(lambda t: t not in SCHEMA)
# The edges: 1 and 128 characters are names, 0 and 129 are not.
good_names = st.text(min_size=1, max_size=8) | long_texts(st.integers(MAX_NAME - 1, MAX_NAME))
bad_names = st.just("") | long_texts(st.integers(MAX_NAME + 1, MAX_NAME + 3)) | non_strings
# Fields no type has; "from" among them, since a delivery must overwrite a client's own "from".
extra_keys = st.sampled_from(["from", "x", "payload2", "ID", "Type"])


@st.composite
def message_objects(
    draw: st.DrawFn,
    names: st.SearchStrategy[str] = good_names,
    payloads: st.SearchStrategy[Any] | None = None,
) -> dict[str, Any]:
    """A JSON object shaped like a client message, most often a valid one, else with one or more
    of: a missing, unknown or non-string type; a bad id; a missing or wrongly typed field."""
    obj: dict[str, Any] = {}
    type_kind = draw(st.sampled_from(["known"] * 6 + ["unknown", "non_string", "null", "absent"]))
    if type_kind == "known":
        obj["type"] = draw(st.sampled_from(list(SCHEMA)))
    elif type_kind == "unknown":
        obj["type"] = draw(unknown_types)
    elif type_kind == "non_string":
        obj["type"] = draw(non_strings | st.dictionaries(st.text(max_size=3), json_scalars))
    elif type_kind == "null":
        obj["type"] = None
    id_kind = draw(st.sampled_from(["absent", "valid", "valid", "null", "bad"]))
    if id_kind == "valid":
        obj["id"] = draw(valid_ids)
    elif id_kind == "null":
        obj["id"] = None
    elif id_kind == "bad":
        # An over-long string id only where the type is known: elsewhere the server echoes it
        # (test_an_unusable_id_is_not_echoed_for_a_bad_type).
        obj["id"] = draw(bad_id_values | overlong_ids if type_kind == "known" else bad_id_values)
    schema = SCHEMA.get(obj["type"], {}) if isinstance(obj.get("type"), str) else {}
    for name, (kind, _required) in schema.items():
        how = draw(st.sampled_from(["good"] * 5 + ["absent", "bad"]))
        if how == "good":
            if kind == NAME:
                obj[name] = draw(names)
            elif kind == TEXT:
                obj[name] = draw(st.text(max_size=20))
            else:
                obj[name] = draw(payloads if payloads is not None else payload_values)
        elif how == "bad":
            obj[name] = draw(bad_names if kind == NAME else non_strings)
    extras = draw(st.dictionaries(extra_keys, small_values, max_size=2))
    obj.update(extras)
    return obj


Parsed = tuple[str, dict[str, Any], MessageId]


def parse(frame: str | bytes) -> Parsed | ProtocolError:
    """protocol.parse, its refusal returned rather than raised; anything else propagates and fails
    the property, which is the point."""
    try:
        return protocol.parse(frame)
    except ProtocolError as exc:
        return exc


@st.composite
def valid_messages(draw: st.DrawFn, names: st.SearchStrategy[str]) -> dict[str, Any]:
    """A valid message of any type, most often with an id (so that it earns a reply)."""
    message_type = draw(st.sampled_from(list(SCHEMA)))
    obj: dict[str, Any] = {"type": message_type}
    if draw(st.integers(0, 3)):
        obj["id"] = draw(valid_ids)
    for name, (kind, required) in SCHEMA[message_type].items():
        if kind == NAME:
            obj[name] = draw(names)
        elif kind == TEXT:
            obj[name] = draw(st.text(max_size=8))
        elif required or draw(st.booleans()):
            obj[name] = draw(small_values)
    return obj


def check_parse_contract(frame: str | bytes) -> None:
    """The weakest promise, for input of any shape: a message or a documented ProtocolError."""
    outcome = parse(frame)
    if isinstance(outcome, ProtocolError):
        exc = outcome
        assert exc.code in PARSE_CODES, exc.code
        assert exc.message_type in protocol.RECEIVED_TYPES
        assert exc.ref is None or type(exc.ref) in (int, str)
        frame_out = orjson.loads(protocol.error(exc.code, exc.message, exc.ref))
        assert frame_out == {
            "type": "error",
            "code": exc.code,
            "message": exc.message,
            "ref": exc.ref,
        }
    else:
        message_type, obj, ref = outcome
        assert message_type in SCHEMA
        assert type(obj) is dict
        assert obj["type"] == message_type
        assert ref is None or usable_id(ref)


# --- The sans-I/O core.


@given(st.binary(max_size=128))
def test_any_bytes_parse_or_raise_a_documented_error(data: bytes) -> None:
    check_parse_contract(data)


@given(st.text(max_size=64))
def test_any_text_parses_as_its_utf8_bytes_do(text: str) -> None:
    """A str frame and its UTF-8 bytes (what the server actually parses) get the same outcome."""
    check_parse_contract(text)
    outcomes: list[object] = []
    for frame in (text, text.encode()):
        outcome = parse(frame)
        # Not the error's message: orjson words positions in str and bytes differently.
        if isinstance(outcome, ProtocolError):
            outcomes.append((outcome.message_type, outcome.code, outcome.ref))
        else:
            outcomes.append(outcome)
    assert outcomes[0] == outcomes[1]


@st.composite
def near_json(draw: st.DrawFn) -> bytes:
    """JSON, usually a message, with a few bytes inserted, deleted or flipped: malformed frames
    close to valid ones, which random bytes almost never are."""
    value = draw(message_objects())
    data = bytearray(orjson.dumps(value))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = draw(st.sampled_from(b'{}[]",:\\ 0-e.ntfx\x00\xff\xc3'))
        if edit == "insert":
            data.insert(at, byte)
        elif at < len(data):
            if edit == "delete":
                del data[at]
            else:
                data[at] = byte
    return bytes(data)


@given(near_json())
def test_nearly_json_frames_parse_or_raise_a_documented_error(data: bytes) -> None:
    check_parse_contract(data)


@given(json_values(max_leaves=20))
def test_any_json_value_gets_what_the_contract_says(value: Any) -> None:
    check_outcome(value)


@given(message_objects())
def test_message_shaped_objects_get_what_the_contract_says(obj: dict[str, Any]) -> None:
    """Valid messages of every type are accepted as sent; a refusal has a code the contract
    allows for this message, names the field at fault, and echoes the id as `ref` whenever it
    was usable (whatever else was wrong)."""
    check_outcome(obj)


def check_outcome(value: Any) -> None:
    expected = expect(value)
    outcome = parse(orjson.dumps(value))
    if isinstance(outcome, ProtocolError):
        exc = outcome
        assert isinstance(expected, Refused), f"refused a valid message: {exc.code} {exc.message}"
        assert matches(expected, exc), (expected, exc.message_type, exc.code, exc.message, exc.ref)
    else:
        message_type, obj, ref = outcome
        assert expected == Accepted(message_type, ref)
        assert obj == value  # the message handed on is the one sent


# Few examples and no shrinking: every example fails (the minimal one is in the reason), and
# shrinking a failing property would cost every unit run seconds.
@settings(max_examples=3, phases=[Phase.explicit, Phase.generate])
@given(
    st.sampled_from(["absent", "null", "unknown"]),
    unknown_types,
    overlong_ids,
)
def test_an_unusable_id_is_not_echoed_for_a_bad_type(kind: str, unknown: str, ref: str) -> None:
    obj: dict[str, Any] = {"id": ref}
    if kind != "absent":
        obj["type"] = None if kind == "null" else unknown
    with pytest.raises(ProtocolError) as caught:
        protocol.parse(orjson.dumps(obj))
    assert caught.value.ref is None


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def with_deep_payload(obj: dict[str, Any], depth: int) -> bytes:
    """`obj` as a frame with a payload nested `depth` lists deep, written by hand: orjson reads
    1024 levels but writes only 255, so it cannot write such a frame itself."""
    head = orjson.dumps(obj)
    return head[:-1] + b',"payload":' + b"[" * depth + b"0" + b"]" * depth + b"}"


@given(
    st.sampled_from(FANOUT),
    st.one_of(st.integers(0, 40), st.integers(240, 600)),
    st.none() | valid_ids,
    st.text(min_size=1, max_size=MAX_NAME),
)
def test_a_delivery_is_the_message_from_its_sender_or_a_refusal(
    message_type: str, depth: int, ref: MessageId, sender: str
) -> None:
    """Recipients get the message without its id, with `from` set to the real sender (never the
    client's own `from`); a payload too deep to write again is refused as invalid_field, never
    an encoder exception. orjson reads 1024 levels but writes 255."""
    obj: dict[str, Any] = {
        "type": message_type,
        "room": "r",
        "text": "t",
        "user": "u",
        "topic": "t",
    }
    obj["from"] = "spoofed"
    if ref is not None:
        obj["id"] = ref
    parsed_type, parsed, parsed_ref = protocol.parse(with_deep_payload(obj, depth))
    obj["payload"] = nested(depth)
    try:
        outcome: bytes | ProtocolError = protocol.delivery(parsed_type, sender, parsed, parsed_ref)
    except ProtocolError as exc:
        outcome = exc
    if isinstance(outcome, ProtocolError):
        assert depth > 200, "a shallow payload must be deliverable"
        assert (outcome.message_type, outcome.code, outcome.ref) == (
            message_type,
            "invalid_field",
            ref,
        )
    else:
        expected = {key: value for key, value in obj.items() if key != "id"}
        assert orjson.loads(outcome) == {**expected, "from": sender}


@given(valid_ids, st.text(max_size=40), st.sampled_from(sorted(PARSE_CODES)))
def test_reply_frames_encode_any_usable_id(ref: MessageId, message: str, code: str) -> None:
    assert orjson.loads(protocol.ack(ref)) == {"type": "ack", "id": ref}
    assert orjson.loads(protocol.pong(ref)) == {"type": "pong", "id": ref}
    frame = orjson.loads(protocol.error(code, message, ref))
    assert frame == {"type": "error", "code": code, "message": message, "ref": ref}


# --- The real handlers, in-process.

SETTINGS = Settings(workers=1, worker_capacity=4, rate_limit=10**9)
MAX_FRAME = SETTINGS.max_message_bytes


@dataclass(frozen=True)
class Text:
    data: bytes


@dataclass(frozen=True)
class Binary:
    data: bytes


@dataclass(frozen=True)
class BadUtf8:
    """A text frame that is not UTF-8: the connection fails with 1007."""

    data: bytes


@dataclass(frozen=True)
class TooLarge:
    """A text frame past max_message_bytes: the connection is closed with 1009."""

    size: int


Frame = Text | Binary
Last = BadUtf8 | TooLarge

# A small pool of names, so that a chat follows a join of its room and a notify reaches the
# sender's own user often enough to matter; the long ones keep the 128-character edge in play.
pool_names = st.sampled_from(["lobby", "r2", "ann"]) | good_names


def _json(value: Any) -> Text:
    return Text(orjson.dumps(value))


def _not_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return True
    return False


def _exactly_max(ref: int) -> Text:
    head = b'{"type":"echo","id":%d,"pad":"' % ref
    return Text(head + b"x" * (MAX_FRAME - len(head) - 2) + b'"}')


frames: st.SearchStrategy[Frame] = st.one_of(
    # Valid messages of every type, so that few examples still meet each handler.
    st.builds(_json, valid_messages(pool_names)),
    st.builds(_json, valid_messages(pool_names)),
    st.builds(_json, message_objects(names=pool_names, payloads=small_values)),
    st.builds(Text, st.text(max_size=24).filter(_not_json).map(str.encode)),
    st.builds(_json, json_values(6).filter(lambda v: not isinstance(v, dict))),
    st.builds(Binary, st.binary(max_size=24)),
    # Refused at delivery, not at parse: too deep for orjson to write again.
    st.builds(
        lambda ref: Text(with_deep_payload({"type": "broadcast", "id": ref}, 300)), json_ints
    ),
    # The largest frame allowed is served, not closed.
    st.builds(_exactly_max, st.integers(0, 9)),
)
bad_utf8 = st.builds(
    lambda head, bad, tail: BadUtf8(head.encode() + bad + tail.encode()),
    st.text(max_size=8),
    st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"]),
    st.text(max_size=8),
)
too_large = st.builds(TooLarge, st.integers(MAX_FRAME + 1, MAX_FRAME + 64))


@dataclass
class Reply:
    """One frame the client must get: `check` says whether it is the right one, and may record
    (for an error) the code it was refused with, which the counters then must show."""

    what: str
    check: Callable[[bytes], bool]


@dataclass
class Model:
    """The connection as the docs describe it, and the counters its frames must produce."""

    user: str | None = None
    memberships: set[tuple[str, str]] = field(default_factory=set)
    replies: list[Reply] = field(default_factory=list)
    received: Counter[str] = field(default_factory=Counter)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=lambda: Counter({"welcome": 1}))
    bytes_in: int = 0

    def exact(self, kind: str, frame: dict[str, Any]) -> None:
        self.sent[kind] += 1
        self.replies.append(Reply(f"{frame}", lambda data: orjson.loads(data) == frame))

    def error(self, counted_as: str, problems: set[tuple[str, str | None]], ref: MessageId) -> None:
        self.sent["error"] += 1

        def check(data: bytes) -> bool:
            frame = orjson.loads(data)
            ok = (
                set(frame) == {"type", "code", "message", "ref"}
                and frame["type"] == "error"
                and frame["ref"] == ref
                and type(frame["ref"]) is type(ref)  # 1 == True in Python, not in JSON
                and any(
                    c == frame["code"] and names_field((c, f), frame["message"])
                    for c, f in problems
                )
            )
            if ok:
                self.errors[counted_as, frame["code"]] += 1
                event(f"error {frame['code']}")
            return ok

        self.replies.append(Reply(f"error {sorted(problems, key=str)} ref={ref!r}", check))

    def ack(self, ref: MessageId) -> None:
        if ref is not None:
            self.exact("ack", {"type": "ack", "id": ref})

    def frame(self, frame: Frame) -> None:
        self.bytes_in += len(frame.data)
        if isinstance(frame, Binary):
            self.received["invalid"] += 1
            self.error("invalid", {("binary_frame", None)}, None)
            return
        try:
            obj = orjson.loads(frame.data)
        except orjson.JSONDecodeError:
            self.received["invalid"] += 1
            self.error("invalid", {("invalid_json", None)}, None)
            return
        outcome = expect(obj)
        if isinstance(outcome, Refused):
            self.received[outcome.counted_as] += 1
            self.error(outcome.counted_as, set(outcome.problems), outcome.ref)
            return
        self.message(outcome.message_type, obj, outcome.ref, frame.data)

    def message(self, kind: str, obj: dict[str, Any], ref: MessageId, raw: bytes) -> None:
        self.received[kind] += 1
        event(f"accepted {kind}")
        if kind == "echo":
            self.sent["echo"] += 1
            self.replies.append(Reply("the echo, byte for byte", lambda data: data == raw))
        elif kind == "ping":
            self.exact("pong", {"type": "pong", "id": ref} if ref is not None else {"type": "pong"})
        elif kind == "identify":
            self.user = obj["user"]
            self.ack(ref)
        elif kind in ("join", "subscribe"):
            key = (
                "room" if kind == "join" else "topic",
                obj["room" if kind == "join" else "topic"],
            )
            if key not in self.memberships and len(self.memberships) >= 100:
                self.error(kind, {("too_many_memberships", None)}, ref)
                return
            self.memberships.add(key)
            self.ack(ref)
        elif kind in ("leave", "unsubscribe"):
            self.memberships.discard(
                ("room", obj["room"]) if kind == "leave" else ("topic", obj["topic"])
            )
            self.ack(ref)
        else:
            self.fanout(kind, obj, ref)

    def fanout(self, kind: str, obj: dict[str, Any], ref: MessageId) -> None:
        if kind == "chat" and ("room", obj["room"]) not in self.memberships:
            self.error("chat", {("not_in_room", "room")}, ref)
            return
        if depth(obj) > 200:
            self.error(kind, {("invalid_field", None)}, ref)
            return
        # This connection is the only one: it gets a delivery only of a notify to its own user.
        if kind == "notify" and obj["user"] == self.user:
            delivered = {key: value for key, value in obj.items() if key != "id"}
            self.exact("notify", {**delivered, "from": self.user})
        self.ack(ref)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def counters(snapshot: Any, name: str) -> dict[tuple[str, ...], float]:
    return {row.labels: row.value for row in values(snapshot, name) if row.value}


async def run_connection(sequence: list[Frame], last: Last | None) -> None:
    model = Model()
    event(f"ends with {type(last).__name__}")
    for frame in sequence:
        model.frame(frame)
    # A ping after everything proves the connection still answers, and bounds what to read.
    model.frame(Text(b'{"type":"ping","id":"end"}'))
    app = standalone_app(SETTINGS)
    async with TestClient(TestServer(app)) as client:
        worker = app[WORKER]
        ws = await client.ws_connect("/ws")
        got = [await ws.receive(timeout=5)]
        bytes_out = len(got[0].data.encode())
        assert orjson.loads(got[0].data)["type"] == "welcome"
        # Pipelined: the replies must come back in order whatever the timing.
        for frame in (*sequence, Text(b'{"type":"ping","id":"end"}')):
            if isinstance(frame, Binary):
                await ws.send_bytes(frame.data)
            else:
                await ws.send_frame(frame.data, WSMsgType.TEXT)
        for index, reply in enumerate(model.replies):
            msg = await ws.receive(timeout=5)
            assert msg.type is WSMsgType.TEXT, (index, reply.what, msg)
            data = msg.data.encode()
            bytes_out += len(data)
            assert reply.check(data), (index, reply.what, msg.data)
        close_code = 1000
        if isinstance(last, BadUtf8):
            model.bytes_in += len(last.data)
            close_code = 1007
            await ws.send_frame(last.data, WSMsgType.TEXT)
        elif isinstance(last, TooLarge):
            close_code = 1009
            await ws.send_frame(b"x" * last.size, WSMsgType.TEXT)
        if last is None:
            await ws.close()
        else:
            model.received["invalid"] += 1
            model.errors["invalid", "invalid_frame" if close_code == 1007 else "too_large"] += 1
            msg = await ws.receive(timeout=5)
            assert (msg.type, msg.data) == (WSMsgType.CLOSE, close_code), msg
        # The worker counts a connection closed once its read loop has returned.
        closed = worker.metrics.closed

        async def closes() -> float:
            return sum(cell.value for cell in closed.values())

        await eventually(closes, bool, within=5, what="the worker counts the close", interval=0.001)
        snapshot = worker.metrics.registry.snapshot()
    assert counters(snapshot, "wsmon_messages_received_total") == {
        (kind,): n for kind, n in model.received.items()
    }
    assert counters(snapshot, "wsmon_client_errors_total") == dict(model.errors)
    assert counters(snapshot, "wsmon_message_failures_total") == {}  # no handler raised
    assert counters(snapshot, "wsmon_messages_sent_total") == {
        (kind,): n for kind, n in model.sent.items()
    }
    assert counters(snapshot, "wsmon_connections_closed_total") == {(str(close_code),): 1}
    in_out = counters(snapshot, "wsmon_message_bytes_total")
    assert (in_out.get(("in",), 0), in_out.get(("out",), 0)) == (model.bytes_in, bytes_out)


# Every type's handler on every run, whatever the random examples meet: each valid message with an
# id (so each earns a reply), a notify to the sender's own user (a delivery to itself, a spoofed
# `from` overwritten), and a chat before and after joining.
EVERY_TYPE: list[Frame] = [
    _json(message)
    for message in [
        {"type": "chat", "room": "lobby", "text": "early", "id": 1},
        {"type": "echo", "id": "e", "payload": {"a": [1, "ü"]}},
        {"type": "ping", "id": 2},
        {"type": "identify", "user": "ann", "id": 3},
        {"type": "join", "room": "lobby", "id": 4},
        {"type": "chat", "room": "lobby", "text": "hi", "id": 5},
        {"type": "notify", "user": "ann", "payload": 1, "from": "mallory", "id": 6},
        {"type": "subscribe", "topic": "t", "id": 7},
        {"type": "publish", "topic": "t", "payload": None, "id": 8},
        {"type": "unsubscribe", "topic": "t", "id": 9},
        {"type": "broadcast", "payload": "all", "id": 10},
        {"type": "leave", "room": "lobby", "id": 11},
        {"type": "chat", "room": "lobby", "text": "late", "id": 12},
    ]
]


@settings(
    max_examples=hypothesis_profile.examples(0.4),
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(frames, max_size=16), st.none() | bad_utf8 | too_large)
@example(EVERY_TYPE, None)
@example([Binary(b"\x00"), Text(b"nope")], BadUtf8(b"\xff"))
@example([], TooLarge(MAX_FRAME + 1))
def test_a_random_session_gets_the_documented_replies_and_counts(
    sequence: list[Frame], last: Last | None
) -> None:
    """Each example is one connection to a fresh worker: its own event loop and test server, so
    counters start from zero and no state leaks between examples."""
    asyncio.run(run_connection(sequence, last))
