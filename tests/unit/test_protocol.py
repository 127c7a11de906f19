"""The wire contract without sockets: parsing, validation, error codes and outgoing frames."""

import orjson
import pytest

from wsmon.exporter import protocol
from wsmon.exporter.frames import text_frame
from wsmon.exporter.protocol import ProtocolError


def test_valid_message_returns_type_object_and_id() -> None:
    message_type, obj, ref = protocol.parse('{"type":"chat","room":"r","text":"hi","id":7}')
    assert (message_type, obj["room"], ref) == ("chat", "r", 7)


@pytest.mark.parametrize(
    ("text", "message_type", "code", "ref"),
    [
        ("{not json", "invalid", protocol.INVALID_JSON, None),
        ("[1, 2]", "invalid", protocol.NOT_AN_OBJECT, None),
        ('{"id": 3}', "invalid", protocol.MISSING_FIELD, 3),
        ('{"type": "teleport", "id": "a"}', "invalid", protocol.UNKNOWN_TYPE, "a"),
        ('{"type": 5}', "invalid", protocol.UNKNOWN_TYPE, None),
        ('{"type": "join", "id": 1}', "join", protocol.MISSING_FIELD, 1),
        ('{"type": "join", "room": ""}', "join", protocol.INVALID_FIELD, None),
        ('{"type": "join", "room": 4}', "join", protocol.INVALID_FIELD, None),
        ('{"type": "chat", "room": "r", "text": 1}', "chat", protocol.INVALID_FIELD, None),
        ('{"type": "notify", "payload": 1}', "notify", protocol.MISSING_FIELD, None),
        ('{"type": "ping", "id": [1]}', "ping", protocol.INVALID_FIELD, None),
        ('{"type": "ping", "id": true}', "ping", protocol.INVALID_FIELD, None),
        ('{"type": "join", "room": "' + "x" * 129 + '"}', "join", protocol.INVALID_FIELD, None),
    ],
)
def test_bad_messages_raise_counted_errors(
    text: str, message_type: str, code: str, ref: object
) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.parse(text)
    assert caught.value.message_type == message_type
    assert caught.value.code == code
    assert caught.value.ref == ref


def test_every_client_type_parses_with_its_required_fields() -> None:
    examples = {
        "echo": {},
        "ping": {},
        "identify": {"user": "u"},
        "join": {"room": "r"},
        "leave": {"room": "r"},
        "chat": {"room": "r", "text": "t"},
        "notify": {"user": "u"},
        "subscribe": {"topic": "t"},
        "unsubscribe": {"topic": "t"},
        "publish": {"topic": "t"},
        "broadcast": {},
    }
    assert set(examples) == set(protocol.CLIENT_TYPES)
    for message_type, fields in examples.items():
        assert protocol.parse(orjson.dumps({"type": message_type, **fields}))[0] == message_type


def test_error_frame_carries_code_message_and_ref() -> None:
    frame = orjson.loads(protocol.error(protocol.UNKNOWN_TYPE, "nope", "id-1"))
    assert frame == {"type": "error", "code": "unknown_type", "message": "nope", "ref": "id-1"}


def test_delivery_drops_the_senders_id_and_names_the_sender() -> None:
    obj = {"type": "chat", "room": "r", "text": "hi", "id": 9}
    assert orjson.loads(protocol.delivery("chat", "alice", obj, 9)) == {
        "type": "chat",
        "room": "r",
        "text": "hi",
        "from": "alice",
    }


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (5, b"\x81\x05"),
        (200, b"\x81\x7e\x00\xc8"),
        (70000, b"\x81\x7f" + (70000).to_bytes(8, "big")),
    ],
)
def test_text_frame_uses_the_shortest_length_encoding(size: int, header: bytes) -> None:
    payload = b"x" * size
    assert text_frame(payload) == header + payload
