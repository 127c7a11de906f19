"""Deliveries between workers: a relayed frame from one worker goes to every other live one, and
one from another instance (broker.py) to every live worker."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .control import ControlChannel
from .pool import Slot

# Deliveries relayed to one worker and not yet taken: past this the worker is stuck, not slow.
RELAY_BACKLOG_LIMIT = 64 * 1024 * 1024


class Relay:
    def __init__(self, slots: Sequence[Slot], replace: Callable[[Slot, str], None]) -> None:
        self.slots = slots
        self._replace = replace  # kills a stuck worker (Pool.replace) rather than buffer for it

    def forward(self, sender: Slot | None, header: dict[str, Any], body: bytes) -> None:
        frame = ControlChannel.encode(header, body)  # once, for every other worker
        for other in self.slots:
            if other is not sender and other.alive and other.channel is not None:
                if other.channel.backlog() > RELAY_BACKLOG_LIMIT:
                    self._replace(
                        other, f"is more than {RELAY_BACKLOG_LIMIT} bytes behind on deliveries"
                    )
                else:
                    other.channel.write(frame)
