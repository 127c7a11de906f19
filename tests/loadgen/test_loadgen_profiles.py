"""Profiles and message mixes: the presets the guide names, overrides and bad input."""

from __future__ import annotations

import pytest

from wsmon.loadgen.profiles import (
    PROFILE_NAMES,
    ProfileError,
    parse_mix,
    resolve_profile,
)


@pytest.mark.parametrize(
    ("name", "connections"), [("light", 50), ("medium", 200), ("heavy", 500), ("extreme", 1000)]
)
def test_named_profiles_have_the_guides_connection_counts(name: str, connections: int) -> None:
    profile = resolve_profile(name)
    assert profile.connections == connections
    assert profile.interval == 1.0
    assert profile.planned_rate == connections


def test_every_profile_the_cli_offers_resolves() -> None:
    """PROFILE_NAMES is the choice `wsmon loadtest` offers: each must be a profile that runs."""
    for name in PROFILE_NAMES:
        profile = resolve_profile(name, connections=7)
        assert (profile.name, profile.connections) == (name, 7)


def test_custom_needs_connections_and_takes_the_interval() -> None:
    with pytest.raises(ProfileError, match="--connections"):
        resolve_profile("custom")
    profile = resolve_profile("custom", connections=300, interval=0.3)
    assert (profile.connections, profile.interval) == (300, 0.3)
    assert profile.planned_rate == pytest.approx(1000)


def test_options_override_a_named_profile() -> None:
    profile = resolve_profile("heavy", duration=5, ramp_up=0, interval=2)
    assert (profile.connections, profile.duration, profile.ramp_up, profile.interval) == (
        500,
        5,
        0,
        2,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"connections": 0}, "--connections must be at least 1"),
        ({"interval": 0.0}, "--interval must be at least 0.001"),
        ({"duration": 0.0}, "--duration must be more than 0"),
        ({"ramp_up": -1.0}, "--ramp-up must be 0 s or more"),
    ],
)
def test_out_of_range_values_are_refused(overrides: dict[str, float], message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        resolve_profile("light", **overrides)  # type: ignore[arg-type]


def test_unknown_profile_lists_the_profiles() -> None:
    with pytest.raises(ProfileError, match="light, medium, heavy, extreme, custom"):
        resolve_profile("huge")


def test_mix_parses_weights_in_order() -> None:
    mix = parse_mix("echo=8, chat=1,publish=1")
    assert mix.weights == (("echo", 8), ("chat", 1), ("publish", 1))
    assert str(mix) == "echo=8,chat=1,publish=1"
    assert parse_mix("ping").weights == (("ping", 1),)


def test_mix_pick_follows_the_weights() -> None:
    mix = parse_mix("echo=8,chat=1,publish=1")
    assert [mix.pick(u) for u in (0.0, 0.79, 0.8, 0.89, 0.9, 0.999)] == [
        "echo",
        "echo",
        "chat",
        "chat",
        "publish",
        "publish",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("echo=1,shout=2", "unknown message type 'shout'"),
        ("echo=1,echo=2", "listed twice"),
        ("echo=x", "must be an integer"),
        ("echo=0", "at least 1"),
        (" , ", "no message types"),
    ],
)
def test_bad_mixes_are_refused(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_mix(text)
