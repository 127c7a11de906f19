"""Load profiles (the monitoring guide's light/medium/heavy/extreme, plus custom) and message mixes.

Pure data and parsing: nothing here opens a socket.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field, replace
from typing import Final


@dataclass(frozen=True)
class Profile:
    """How much load to offer: `connections` sockets, each sending one message every `interval`
    seconds for `duration` seconds after a `ramp_up` during which the sockets are opened evenly.
    """

    name: str
    connections: int
    interval: float
    duration: float
    ramp_up: float

    @property
    def planned_rate(self) -> float:
        """Messages per second offered once every connection is open."""
        return self.connections / self.interval


# One message a second per connection is what a busy chat or notification client sends; the
# profiles differ in connection count, as in the guide. Durations are short enough for CI.
PROFILES: Final[dict[str, Profile]] = {
    "light": Profile("light", connections=50, interval=1.0, duration=10.0, ramp_up=1.0),
    "medium": Profile("medium", connections=200, interval=1.0, duration=30.0, ramp_up=2.0),
    "heavy": Profile("heavy", connections=500, interval=1.0, duration=30.0, ramp_up=5.0),
    "extreme": Profile("extreme", connections=1000, interval=1.0, duration=30.0, ramp_up=10.0),
}
CUSTOM: Final = "custom"
# custom has no preset connection count: --connections is required.
CUSTOM_DEFAULTS: Final = Profile(CUSTOM, connections=0, interval=1.0, duration=30.0, ramp_up=1.0)
PROFILE_NAMES: Final = (*PROFILES, CUSTOM)


class ProfileError(ValueError):
    """A profile or mix the user asked for that cannot be run; the message says why."""


def resolve_profile(
    name: str,
    *,
    connections: int | None = None,
    interval: float | None = None,
    duration: float | None = None,
    ramp_up: float | None = None,
) -> Profile:
    """The named profile with any given value overriding its preset."""
    if name == CUSTOM:
        if connections is None:
            raise ProfileError(
                "the custom profile needs --connections N (and usually --interval S)"
            )
        base = CUSTOM_DEFAULTS
    elif name in PROFILES:
        base = PROFILES[name]
    else:
        raise ProfileError(f"unknown profile {name!r}; profiles: {', '.join(PROFILE_NAMES)}")
    profile = replace(
        base,
        connections=base.connections if connections is None else connections,
        interval=base.interval if interval is None else interval,
        duration=base.duration if duration is None else duration,
        ramp_up=base.ramp_up if ramp_up is None else ramp_up,
    )
    if profile.connections < 1:
        raise ProfileError(f"--connections must be at least 1, got {profile.connections}")
    # Below a millisecond the client's timers (1 ms resolution on uvloop) cannot keep the schedule.
    if profile.interval < 0.001:
        raise ProfileError(f"--interval must be at least 0.001 s, got {profile.interval:g}")
    if profile.duration <= 0:
        raise ProfileError(f"--duration must be more than 0 s, got {profile.duration:g}")
    if profile.ramp_up < 0:
        raise ProfileError(f"--ramp-up must be 0 s or more, got {profile.ramp_up:g}")
    return profile


# Message types the generator can send, each answered by exactly one frame carrying its id
# (echo: the echo itself, ping: pong, the rest: ack), which is the reply whose latency is timed.
MIX_TYPES: Final = ("echo", "ping", "chat", "publish", "notify", "broadcast")
DEFAULT_MIX: Final = "echo=8,chat=1,publish=1"


@dataclass(frozen=True)
class Mix:
    """Message types with integer weights; `pick(u)` maps a uniform u in [0, 1) to a type."""

    weights: tuple[tuple[str, int], ...]
    # Cumulative weights, so a pick is one bisect: the per-message cost stays constant.
    cumulative: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cumulative = tuple(itertools.accumulate(weight for _, weight in self.weights))
        object.__setattr__(self, "cumulative", cumulative)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.weights)

    def pick(self, u: float) -> str:
        index = bisect.bisect_right(self.cumulative, u * self.cumulative[-1])
        return self.weights[index][0]

    def __str__(self) -> str:
        return ",".join(f"{name}={weight}" for name, weight in self.weights)


def parse_mix(text: str) -> Mix:
    """Parse `echo=8,chat=1,publish=1` (a bare `echo` means weight 1). Weights are integers >= 1;
    a type listed twice is an error rather than a silent sum.
    """
    weights: dict[str, int] = {}
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        name, sep, raw = item.partition("=")
        name = name.strip()
        if name not in MIX_TYPES:
            raise ProfileError(
                f"--mix: unknown message type {name!r}; known: {', '.join(MIX_TYPES)}"
            )
        if name in weights:
            raise ProfileError(f"--mix: {name} is listed twice")
        try:
            weight = int(raw) if sep else 1
        except ValueError:
            raise ProfileError(f"--mix: weight of {name} must be an integer, got {raw!r}") from None
        if weight < 1:
            raise ProfileError(f"--mix: weight of {name} must be at least 1, got {weight}")
        weights[name] = weight
    if not weights:
        raise ProfileError(f"--mix: no message types given; e.g. {DEFAULT_MIX}")
    return Mix(tuple(weights.items()))
