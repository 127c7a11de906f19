"""Delivery verification: which of the load generator's own connections must receive each chat,
publish, notify and broadcast it sends, and whether each did, once, in time.

Identifiers. Every fan-out message gets a run-wide number `mid` (0, 1, 2, ...), written into its
`text` (chat) or `payload` (the others), which the server hands to recipients unchanged:
`"wsmon loadtest 3fa2c1 0000001234"`, 32 bytes like the payload it replaces. The 6 hex digits are
this run's, so deliveries from another load generator in the same rooms are told apart.
`senders[mid]` is the connection that sent it; a connection's instance is its URL index
(`index % len(urls)`, the round-robin of Run), its group `index // GROUP_SIZE`.

Who must receive what. A connection is *ready* once its first reply arrives: the server handles
a connection's frames in order, so by then its join/subscribe/identify are in force on its
worker, and a message any other connection sends afterwards (in this one event loop, so
causally after) must reach it, through whatever relay or broker lies between. Messages sent
before a recipient was ready may or may not reach it: they are not expected, and if they arrive
they are `unverified`. The recipients of a message are its sender's ready group members (chat,
publish), every other ready connection (broadcast), or the sender itself (notify: its identify
precedes it on its own connection, so no readiness is needed). A recipient the server
disconnects stops being ready; deliveries already owed to it count as missing.

Cost. The sender adds per-instance counts of ready recipients (kept up to date as connections
become ready or drop) to the expected count of each (sender instance → recipient instance) pair:
O(instances), not O(recipients). A recipient checks the delivery against the same rule at
receipt and counts it for its pair: a prefix check, an int(), a few comparisons. Duplicates are
found without a set of everything received, from the protocol's promise that a sender's messages
reach each recipient in order: a delivery numbered at or below the last one the recipient had
from that sender is a duplicate (or out of order, which breaks the same promise). Memory: 8 bytes
per fan-out message, and one number per (recipient, sender) pair.
"""

from __future__ import annotations

import secrets
from array import array
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

# Connections per chat room and per topic: each chat or publish reaches the other 9 members.
GROUP_SIZE: Final = 10
MID_DIGITS: Final = 10
GROUP, NOTIFY, BROADCAST = 0, 1, 2
KINDS: Final = {"chat": GROUP, "publish": GROUP, "notify": NOTIFY, "broadcast": BROADCAST}
FAN_OUT_TYPES: Final = frozenset(KINDS)


def verified_types(types: Iterable[str], *, token: bool) -> list[str]:
    """The fan-out types among `types` whose deliveries a run verifies (notify not with a token:
    identify is refused then, and notify goes to the token's user on every connection)."""
    return [t for t in types if t in FAN_OUT_TYPES and (t != "notify" or not token)]


def instance_label(index: int) -> str:
    """The name of the instance behind the `index`-th --url in the report: 0, 1, 2, ..."""
    return str(index)


class Recipient:
    """What one connection's receiver keeps for the ledger."""

    __slots__ = ("gone", "index", "last_from", "ready", "ready_from", "refused")

    def __init__(self, index: int) -> None:
        self.index = index
        self.ready = False
        self.ready_from = 0  # the first message number it must receive
        self.refused = False  # a set-up frame was refused: membership unknown, never ready
        self.gone = False  # the server closed it
        self.last_from: dict[int, int] = {}  # sender -> last message number received from it


class Ledger:
    """Expected and received deliveries per (sender instance, recipient instance) pair, each
    pair at `sender * instances + recipient` in the flat lists.
    """

    def __init__(
        self,
        instances: int = 1,
        *,
        verify_notify: bool = True,
        nonce: str | None = None,
        group_size: int = GROUP_SIZE,
    ) -> None:
        self.instances = instances
        # With a token, identify is refused and notify goes to the token's user, on every
        # connection that carries it: not a recipient set the generator can predict.
        self.verify_notify = verify_notify
        self.group_size = group_size
        self.mark = f"wsmon loadtest {nonce or secrets.token_hex(3)} "
        self._mark_length = len(self.mark)
        self.senders = array("q")
        self.group_ready: dict[int, list[int]] = {}  # group -> ready members per instance
        self.all_ready = [0] * instances
        pairs = instances * instances
        self.expected = [0] * pairs
        self.received = [0] * pairs
        self.duplicates = [0] * pairs
        self.expected_total = 0
        self.received_total = 0
        self.unexpected = 0  # reached a connection that is not one of its recipients
        self.unverified = 0  # not ours, or sent before the recipient was ready
        self.void: set[int] = set()  # messages answered with an error: nothing of them is owed

    def text(self, mid: int) -> str:
        return f"{self.mark}{mid:0{MID_DIGITS}d}"

    @property
    def template(self) -> str:
        """The text/payload with `%010d` where the message number goes (for bytes %)."""
        return self.mark.replace("%", "%%") + f"%0{MID_DIGITS}d"

    @property
    def outstanding(self) -> int:
        """Expected deliveries not received yet."""
        return self.expected_total - self.received_total

    # -- connection state -------------------------------------------------------------------

    def ready(self, recipient: Recipient) -> None:
        """Its first reply arrived: from the next message on, it is owed its deliveries."""
        if recipient.ready or recipient.refused or recipient.gone:
            return
        recipient.ready = True
        recipient.ready_from = len(self.senders)
        self._count(recipient.index, 1)

    def gone(self, recipient: Recipient) -> None:
        """The server closed it: nothing sent from now on is owed to it."""
        recipient.gone = True
        if recipient.ready:
            recipient.ready = False
            self._count(recipient.index, -1)

    def _count(self, index: int, step: int) -> None:
        instance = index % self.instances
        group = self.group_ready.setdefault(index // self.group_size, [0] * self.instances)
        group[instance] += step
        self.all_ready[instance] += step

    # -- hot path ---------------------------------------------------------------------------

    def sent(self, sender: Recipient, kind: int) -> tuple[int, list[int] | None]:
        """Number a message and add its recipients to the expected counts: (mid, the counts
        added per recipient instance, to take back if the server refuses the message).
        """
        senders = self.senders
        mid = len(senders)
        index = sender.index
        senders.append(index)
        n = self.instances
        row = (index % n) * n
        if kind == NOTIFY:
            if not self.verify_notify or sender.refused:
                return mid, None
            self.expected[row + index % n] += 1
            self.expected_total += 1
            own = [0] * n
            own[index % n] = 1
            return mid, own
        ready = self.group_ready.get(index // self.group_size) if kind == GROUP else self.all_ready
        if ready is None:
            return mid, None
        added = list(ready)
        if sender.ready:
            added[index % n] -= 1
        expected = self.expected
        for b in range(n):
            expected[row + b] += added[b]
        self.expected_total += sum(added)
        return mid, added

    def refused(self, sender_index: int, mid: int, added: list[int]) -> None:
        """The server answered message `mid` with an error, or it could not be sent: none of its
        deliveries is owed (an internal error may have delivered some: they are not counted
        either way).
        """
        self.void.add(mid)
        row = (sender_index % self.instances) * self.instances
        for b, count in enumerate(added):
            self.expected[row + b] -= count
        self.expected_total -= sum(added)

    def delivered(self, recipient: Recipient, message_type: str, message: dict[str, Any]) -> None:
        """A delivery frame reached `recipient`: count it for its pair, as a duplicate, or not."""
        body = message.get("text") if message_type == "chat" else message.get("payload")
        kind = KINDS.get(message_type)
        if kind is None or type(body) is not str or not body.startswith(self.mark):
            self.unverified += 1
            return
        try:
            mid = int(body[self._mark_length :])
            sender = self.senders[mid]
        except (ValueError, IndexError):
            self.unverified += 1
            return
        if self.void and mid in self.void:
            self.unverified += 1
            return
        index = recipient.index
        if kind == NOTIFY:
            if sender != index:
                self.unexpected += 1
                return
            if not self.verify_notify or recipient.refused:
                self.unverified += 1
                return
        elif sender == index or (
            kind == GROUP and sender // self.group_size != index // self.group_size
        ):
            self.unexpected += 1
            return
        elif not recipient.ready or mid < recipient.ready_from:
            self.unverified += 1
            return
        n = self.instances
        pair = (sender % n) * n + index % n
        last_from = recipient.last_from
        if mid <= last_from.get(sender, -1):
            self.duplicates[pair] += 1
            return
        last_from[sender] = mid
        self.received[pair] += 1
        self.received_total += 1

    # -- the report -------------------------------------------------------------------------

    def pairs(self) -> Iterator[tuple[int, int, int, int, int]]:
        """(sender instance, recipient instance, expected, received, duplicates) per pair."""
        n = self.instances
        for a in range(n):
            for b in range(n):
                pair = a * n + b
                yield a, b, self.expected[pair], self.received[pair], self.duplicates[pair]

    @property
    def duplicates_total(self) -> int:
        return sum(self.duplicates)
