"""Connection caps: how many connections one client address, and one user, may hold at once.

Both are counted across the pool by the supervisor, the only part that sees every worker:

- An address is claimed when the supervisor accepts its TCP connection, before the first-byte
  wait (gate.py), so silent connections count too; the claim moves with the connection to the
  worker it is handed to, and the worker reports each one that ends (Op.LOAD's `addresses`).
- A user is claimed by a worker once the handshake's token names it (Op.CLAIM, answered before
  the upgrade) and reported in Op.LOAD's `users` when its connection ends.

Claims are kept by holder (a worker's index, or LOOSE for connections still in the supervisor),
so a worker that dies gives back exactly what it held. A cap of 0 turns it off, counting too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Final

LOOSE: Final = -1  # held by the supervisor itself: accepted, not yet handed to a worker
ADDRESS_LIMIT: Final = "address_limit"
USER_LIMIT: Final = "user_limit"


class Tally:
    """Open connections per key (an address or a user), against a cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: Counter[str] = Counter()
        self._held: dict[int, Counter[str]] = {}

    @property
    def enabled(self) -> bool:
        return self.cap > 0

    def open(self, key: str) -> int:
        return self._open[key]

    def claim(self, key: str, holder: int) -> bool:
        """One more connection for `key`, or False (nothing counted) when it is at the cap."""
        if not self.enabled:
            return True
        if self._open[key] >= self.cap:
            return False
        self._open[key] += 1
        self._held.setdefault(holder, Counter())[key] += 1
        return True

    def move(self, key: str, source: int, destination: int) -> None:
        """The connection went from one holder to another (the supervisor to a worker)."""
        if self._take(key, source, 1):
            self._held.setdefault(destination, Counter())[key] += 1

    def release(self, key: str, holder: int, count: int = 1) -> None:
        taken = self._take(key, holder, count)
        self._drop(key, taken)

    def release_all(self, released: Mapping[str, int], holder: int) -> None:
        """A worker's report: so many of its connections per key have ended."""
        for key, count in released.items():
            self.release(key, holder, count)

    def forget(self, holder: int) -> None:
        """The holder (a worker that died) holds nothing any more."""
        for key, count in self._held.pop(holder, Counter()).items():
            self._drop(key, count)

    def _take(self, key: str, holder: int, count: int) -> int:
        """Take at most `count` of `key` from the holder: a report cannot free what it never held
        (a worker's late report after it was forgotten, or a claim made while caps were off)."""
        held = self._held.get(holder)
        if held is None:
            return 0
        taken = min(count, held[key])
        held[key] -= taken
        if held[key] <= 0:
            del held[key]
        return taken

    def _drop(self, key: str, count: int) -> None:
        self._open[key] -= count
        if self._open[key] <= 0:
            del self._open[key]
