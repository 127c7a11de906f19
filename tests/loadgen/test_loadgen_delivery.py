"""Delivery verification: the ledger's bookkeeping (who must receive what, duplicates, the
per-instance-pair breakdown), the threshold it feeds, and the runner end to end against small
in-process servers that share one hub (two "instances") and can lose, duplicate or partition.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from wsmon.loadgen.client import Run, RunPlan, RunTimes
from wsmon.loadgen.cpu import CpuUsage
from wsmon.loadgen.delivery import BROADCAST, GROUP, NOTIFY, Ledger, Recipient, verified_types
from wsmon.loadgen.htmlreport import render_html
from wsmon.loadgen.profiles import parse_mix, resolve_profile
from wsmon.loadgen.report import Report, build, render_text
from wsmon.loadgen.stats import Recorder
from wsmon.loadgen.thresholds import (
    DEFAULT_THRESHOLDS,
    DELIVERY_THRESHOLDS,
    ThresholdError,
    defaults_for,
    merge,
    parse_threshold,
)

# -- the ledger ----------------------------------------------------------------------------------


def connections(ledger: Ledger, count: int, *, ready: bool = True) -> list[Recipient]:
    recipients = [Recipient(i) for i in range(count)]
    if ready:
        for r in recipients:
            ledger.ready(r)
    return recipients


def deliver(ledger: Ledger, to: Recipient, message_type: str, mid: int) -> None:
    field_name = "text" if message_type == "chat" else "payload"
    ledger.delivered(to, message_type, {"type": message_type, field_name: ledger.text(mid)})


def test_a_chat_is_owed_to_the_other_ready_members_of_its_room_per_instance() -> None:
    ledger = Ledger(2, nonce="abc123")
    # 20 connections: rooms 0-9 and 10-19; even indices on instance 0, odd on instance 1.
    conns = connections(ledger, 20)
    mid, added = ledger.sent(conns[0], GROUP)
    assert mid == 0
    assert added == [4, 5]  # 2, 4, 6, 8 on instance 0 (not the sender); 1, 3, 5, 7, 9 on 1
    assert ledger.expected == [4, 5, 0, 0]  # pairs 0→0, 0→1, 1→0, 1→1
    assert ledger.outstanding == 9
    for r in conns[1:10]:
        deliver(ledger, r, "chat", mid)
    assert ledger.received == [4, 5, 0, 0]
    assert ledger.outstanding == 0
    assert (ledger.duplicates_total, ledger.unexpected, ledger.unverified) == (0, 0, 0)


def test_only_recipients_ready_when_it_was_sent_are_owed_a_message() -> None:
    ledger = Ledger(1, nonce="abc123")
    conns = connections(ledger, 10, ready=False)
    ledger.ready(conns[1])
    early, added = ledger.sent(conns[0], GROUP)
    assert added == [1]  # the sender is not ready yet, so not taken off
    ledger.ready(conns[2])  # became ready after `early` was sent
    deliver(ledger, conns[2], "chat", early)
    assert (ledger.received_total, ledger.unverified) == (0, 1)
    later, added = ledger.sent(conns[0], GROUP)
    assert added == [2]
    deliver(ledger, conns[2], "chat", later)
    assert ledger.received_total == 1
    assert ledger.outstanding == 2  # conns[1] got neither


def test_a_second_copy_is_a_duplicate_and_not_a_delivery() -> None:
    ledger = Ledger(2, nonce="abc123")
    conns = connections(ledger, 10)
    first, _ = ledger.sent(conns[0], GROUP)
    second, _ = ledger.sent(conns[0], GROUP)
    deliver(ledger, conns[1], "chat", first)
    deliver(ledger, conns[1], "chat", first)  # again
    deliver(ledger, conns[1], "chat", second)
    deliver(ledger, conns[1], "chat", first)  # out of order: breaks the per-sender order too
    assert ledger.received == [0, 2, 0, 0]
    assert ledger.duplicates == [0, 2, 0, 0]


def test_deliveries_to_non_recipients_and_foreign_frames_are_not_counted() -> None:
    ledger = Ledger(1, nonce="abc123")
    conns = connections(ledger, 20)
    mid, _ = ledger.sent(conns[0], GROUP)
    deliver(ledger, conns[15], "chat", mid)  # another room
    deliver(ledger, conns[0], "chat", mid)  # back to its sender
    assert ledger.unexpected == 2
    other_run = Ledger(1, nonce="ffffff")
    ledger.delivered(conns[1], "chat", {"type": "chat", "text": other_run.text(mid)})
    ledger.delivered(conns[1], "chat", {"type": "chat", "text": "hello"})
    ledger.delivered(conns[1], "publish", {"type": "publish", "payload": {"n": 1}})
    ledger.delivered(conns[1], "chat", {"type": "chat", "text": ledger.text(99)})  # never sent
    assert ledger.unverified == 4
    assert ledger.received_total == 0


def test_notify_is_owed_to_its_sender_even_before_it_is_ready() -> None:
    ledger = Ledger(2, nonce="abc123")
    conns = connections(ledger, 4, ready=False)
    mid, added = ledger.sent(conns[3], NOTIFY)
    assert added == [0, 1]
    assert ledger.expected == [0, 0, 0, 1]
    deliver(ledger, conns[2], "notify", mid)
    assert ledger.unexpected == 1
    deliver(ledger, conns[3], "notify", mid)
    assert ledger.received == [0, 0, 0, 1]
    unchecked = Ledger(1, verify_notify=False)
    assert unchecked.sent(Recipient(0), NOTIFY)[1] is None
    assert unchecked.expected_total == 0


def test_a_broadcast_is_owed_to_every_other_ready_connection() -> None:
    ledger = Ledger(2, nonce="abc123")
    conns = connections(ledger, 25)
    _, added = ledger.sent(conns[4], BROADCAST)
    assert added == [12, 12]  # 13 even indices less the sender, 12 odd
    assert ledger.expected_total == 24


def test_a_refused_message_is_owed_to_no_one() -> None:
    ledger = Ledger(2, nonce="abc123")
    conns = connections(ledger, 10)
    mid, added = ledger.sent(conns[1], GROUP)
    assert added is not None
    ledger.refused(1, mid, added)
    assert ledger.expected == [0, 0, 0, 0]
    assert ledger.outstanding == 0
    deliver(ledger, conns[2], "chat", mid)  # an internal error may have delivered some
    assert (ledger.received_total, ledger.unverified) == (0, 1)


def test_a_dropped_recipient_is_owed_nothing_sent_after() -> None:
    ledger = Ledger(1, nonce="abc123")
    conns = connections(ledger, 10)
    ledger.sent(conns[0], GROUP)  # owed to 9
    ledger.gone(conns[5])
    _, added = ledger.sent(conns[0], GROUP)
    assert added == [8]
    assert ledger.expected_total == 17
    assert not conns[5].ready
    ledger.ready(conns[5])  # a late reply does not bring it back
    assert ledger.sent(conns[0], GROUP)[1] == [8]


def test_a_refused_set_up_frame_keeps_the_connection_out_of_its_rooms() -> None:
    ledger = Ledger(1, nonce="abc123")
    conns = connections(ledger, 3, ready=False)
    conns[2].refused = True
    for r in conns:
        ledger.ready(r)
    assert ledger.sent(conns[0], GROUP)[1] == [1]


def test_the_message_number_fits_the_32_byte_payload() -> None:
    ledger = Ledger(1)
    assert len(ledger.text(0)) == len(ledger.text(9_999_999_999)) == 32
    assert (ledger.template.encode() % 42).decode() == ledger.text(42)


def test_notify_is_not_verified_with_a_token() -> None:
    types = ("echo", "chat", "publish", "notify", "broadcast")
    assert verified_types(types, token=False) == ["chat", "publish", "notify", "broadcast"]
    assert verified_types(types, token=True) == ["chat", "publish", "broadcast"]
    assert verified_types(("echo", "ping"), token=False) == []


# -- thresholds and the report -------------------------------------------------------------------


def test_delivery_thresholds_parse_and_are_defaults_only_for_a_fan_out_mix() -> None:
    assert str(parse_threshold("delivery_success>99%")) == "delivery_success>99%"
    assert str(parse_threshold("delivery_duplicates<1")) == "delivery_duplicates<1"
    with pytest.raises(ThresholdError, match="percentage"):
        parse_threshold("delivery_success>99")
    with pytest.raises(ThresholdError, match="plain count"):
        parse_threshold("delivery_duplicates<1%")
    assert defaults_for([]) == DEFAULT_THRESHOLDS
    assert defaults_for(["chat"]) == DEFAULT_THRESHOLDS + DELIVERY_THRESHOLDS
    assert defaults_for(["chat", "broadcast"], connections=1) == DEFAULT_THRESHOLDS
    assert defaults_for(["notify"], connections=1) == DEFAULT_THRESHOLDS + DELIVERY_THRESHOLDS
    assert [str(t) for t in DELIVERY_THRESHOLDS] == [
        "delivery_success>98%",
        "delivery_duplicates<1",
    ]


def plan_for(urls: int, mix: str = "echo=8,chat=1,publish=1") -> RunPlan:
    return RunPlan(
        profile=resolve_profile("custom", connections=20, interval=0.5, duration=2, ramp_up=0),
        urls=tuple(f"ws://127.0.0.1:{9 + i}/ws" for i in range(urls)),
        mix=parse_mix(mix),
        seed=7,
    )


def report_for(plan: RunPlan, recorder: Recorder, *given: str) -> Report:
    verified = verified_types(plan.mix.types, token=False)
    return build(
        plan,
        recorder,
        RunTimes(sending_ended=2.0, finished=2.5),
        CpuUsage(user_seconds=0.2, system_seconds=0.05, wall_seconds=2.5),
        merge(defaults_for(verified), [parse_threshold(t) for t in given]),
        started_at="2026-12-02T12:00:00+00:00",
    )


def two_instance_recorder(*, lose_cross: int = 0, duplicate: bool = False) -> Recorder:
    """20 ready connections on 2 instances; connection 0 (instance 0) and 1 (instance 1) each
    chat 100 times to room 0; `lose_cross` of 0's deliveries to instance 1 never arrive.
    """
    recorder = Recorder()
    ledger = recorder.ledger = Ledger(2, nonce="abc123")
    conns = connections(ledger, 20)
    lost = 0
    for _ in range(100):
        for sender in conns[:2]:
            mid, _ = ledger.sent(sender, GROUP)
            for r in conns[:10]:
                if r is sender:
                    continue
                if sender.index == 0 and r.index % 2 == 1 and lost < lose_cross:
                    lost += 1
                    continue
                deliver(ledger, r, "chat", mid)
    if duplicate:
        deliver(ledger, conns[2], "chat", 0)
    return recorder


def test_a_missing_delivery_fails_the_threshold_and_shows_in_its_pair() -> None:
    report = report_for(plan_for(2), two_instance_recorder(lose_cross=2), "delivery_success>99.9%")
    d = report.delivery
    assert (d.expected, d.received, d.missing, d.duplicates) == (1800, 1798, 2, 0)
    pairs = {(p.sender, p.recipient): p for p in d.pairs}
    assert set(pairs) == {("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")}
    assert (pairs["0", "1"].expected, pairs["0", "1"].missing) == (500, 2)
    assert pairs["0", "1"].success_pct == pytest.approx(99.6)
    assert all(p.success_pct == 100.0 for key, p in pairs.items() if key != ("0", "1"))
    verdicts = {t.threshold: t.passed for t in report.thresholds}
    assert verdicts["delivery_success>99.9%"] is False
    assert verdicts["delivery_duplicates<1"] is True
    assert not report.passed
    text = render_text(report)
    assert "  target       0 ws://127.0.0.1:9/ws, 1 ws://127.0.0.1:10/ws" in text
    assert (
        "  verified     1,798 of 1,800 expected arrived   99.89 %   missing 2   duplicates 0"
        in (text)
    )
    assert (
        "  by instance  0→0 100.00 %   0→1 99.60 % (2 missing)   1→0 100.00 %   1→1 100.00 %"
        in text
    )
    assert "  FAIL  delivery_success>99.9%  observed 99.89 %" in text
    data = json.loads(report.to_json())
    assert data["delivery"]["pairs"][1] == {
        "sender": "0",
        "recipient": "1",
        "expected": 500,
        "received": 498,
        "missing": 2,
        "duplicates": 0,
        "success_pct": pytest.approx(99.6),
    }
    html = render_html(report)
    assert '<table id="delivery-pairs">' in html
    assert 'data-sender="0" data-recipient="1" data-expected="500" data-received="498"' in html
    assert "1,798 of 1,800 expected arrived" in html


def test_a_duplicate_fails_the_default_threshold() -> None:
    report = report_for(plan_for(2), two_instance_recorder(duplicate=True))
    assert report.delivery.duplicates == 1
    assert report.delivery.success_pct == 100.0
    verdicts = {t.threshold: t.passed for t in report.thresholds}
    assert verdicts["delivery_duplicates<1"] is False
    assert verdicts["delivery_success>98%"] is True
    assert "0→0 100.00 % (1 duplicate)" in render_text(report)


def test_one_url_has_no_breakdown_and_an_echo_mix_no_verification() -> None:
    recorder = Recorder()
    report = report_for(plan_for(1), recorder)
    assert report.delivery.pairs == []
    assert "by instance" not in render_text(report)
    # A fan-out mix with nothing verified: the default threshold has nothing to judge, and fails.
    verdicts = {t.threshold: t for t in report.thresholds}
    assert verdicts["delivery_success>98%"].observed is None
    assert not verdicts["delivery_success>98%"].passed
    assert verdicts["delivery_duplicates<1"].passed
    echo_only = report_for(plan_for(1, "echo=1"), Recorder())
    assert echo_only.delivery.verified_types == []
    assert "delivery" not in " ".join(t.metric for t in echo_only.thresholds)
    assert "  verified     not verified (no chat, publish, notify or broadcast in the mix)" in (
        render_text(echo_only)
    )


# -- the runner against in-process "instances" sharing one hub -----------------------------------


@dataclass
class Hub:
    """Rooms and topics across every server started from it; instance = the server's number."""

    members: dict[str, set[tuple[int, ServerConnection]]] = field(
        default_factory=lambda: defaultdict(set)
    )
    partitioned: bool = False  # deliveries do not cross between servers
    copies: int = 1  # each delivery sent this many times

    def handler(self, instance: int) -> Callable[[ServerConnection], Awaitable[None]]:
        async def handle(ws: ServerConnection) -> None:
            welcome = {"type": "welcome", "connection_id": f"{instance}-{id(ws)}", "worker": 0}
            await ws.send(orjson.dumps(welcome).decode())
            me = (instance, ws)
            async for raw in ws:
                frame = orjson.loads(raw)
                kind = frame["type"]
                if kind in ("join", "subscribe"):
                    self.members[frame.get("room") or frame["topic"]].add(me)
                    continue
                if kind == "identify":
                    self.members["user:" + frame["user"]].add(me)
                    continue
                ref = frame.pop("id")
                if kind == "echo":
                    frame["id"] = ref
                    await ws.send(orjson.dumps(frame).decode())
                    continue
                name = {"chat": "room", "publish": "topic"}.get(kind)
                group = (
                    frame[name] if name else "user:" + frame["user"] if kind == "notify" else None
                )
                targets = self.members[group] if group else set()
                frame["from"] = "x"
                out = orjson.dumps(frame).decode()
                for target in list(targets):
                    if target == me and kind != "notify":
                        continue
                    if self.partitioned and target[0] != instance:
                        continue
                    for _ in range(self.copies):
                        await target[1].send(out)
                await ws.send(orjson.dumps({"type": "ack", "id": ref}).decode())

        return handle


@pytest.fixture
async def instances() -> AsyncIterator[Callable[[Hub], Awaitable[tuple[str, str]]]]:
    servers = []

    async def start(hub: Hub) -> tuple[str, str]:
        urls = []
        for instance in (0, 1):
            server = await serve(hub.handler(instance), "127.0.0.1", 0, compression=None)
            servers.append(server)
            port = next(iter(server.sockets)).getsockname()[1]
            urls.append(f"ws://127.0.0.1:{port}/ws")
        return urls[0], urls[1]

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def run_over(urls: tuple[str, str]) -> Report:
    plan = RunPlan(
        profile=resolve_profile("custom", connections=20, interval=0.05, duration=0.6, ramp_up=0),
        urls=urls,
        mix=parse_mix("echo=1,chat=2,publish=2,notify=1"),
        seed=3,
        connect_timeout=2.0,
        grace=0.5,
    )
    recorder = Recorder()
    times = await Run(plan, recorder).execute()
    thresholds = merge(defaults_for(["chat"]), [])
    cpu = CpuUsage(user_seconds=0.1, system_seconds=0.0, wall_seconds=1.0)
    return build(plan, recorder, times, cpu, thresholds, started_at="now")


def pair_pcts(report: Report) -> dict[str, float | None]:
    return {f"{p.sender}→{p.recipient}": p.success_pct for p in report.delivery.pairs}


async def test_runner_verifies_every_delivery_across_two_instances(
    instances: Callable[[Hub], Awaitable[tuple[str, str]]],
) -> None:
    report = await run_over(await instances(Hub()))
    d = report.delivery
    assert d.expected > 500
    assert (d.received, d.missing, d.duplicates, d.unexpected) == (d.expected, 0, 0, 0)
    assert pair_pcts(report) == {"0→0": 100.0, "0→1": 100.0, "1→0": 100.0, "1→1": 100.0}
    assert report.passed, render_text(report)


async def test_runner_counts_a_partition_as_missing_cross_instance_deliveries(
    instances: Callable[[Hub], Awaitable[tuple[str, str]]],
) -> None:
    report = await run_over(await instances(Hub(partitioned=True)))
    pcts = pair_pcts(report)
    assert pcts["0→0"] == pcts["1→1"] == 100.0
    assert pcts["0→1"] == pcts["1→0"] == 0.0
    assert report.delivery.missing == sum(p.expected for p in report.delivery.pairs[1:3]) > 0
    assert [t.threshold for t in report.thresholds if not t.passed] == ["delivery_success>98%"]


async def test_runner_counts_duplicates(
    instances: Callable[[Hub], Awaitable[tuple[str, str]]],
) -> None:
    report = await run_over(await instances(Hub(copies=2)))
    d = report.delivery
    assert d.missing == 0
    assert d.duplicates == d.received > 0
    assert [t.threshold for t in report.thresholds if not t.passed] == ["delivery_duplicates<1"]
