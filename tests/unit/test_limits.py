"""The open-file limit is lifted for what a server or a load test holds, and a hard limit that
is too low is reported. Run on this process's own limit, put back after each test."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from wsmon.limits import SPARE, raise_open_file_limit


@pytest.fixture
def hard() -> Iterator[int]:
    """The hard limit; the soft one starts at 300 and is restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or hard > 2000, "no room below the hard limit here"
    resource.setrlimit(resource.RLIMIT_NOFILE, (300, hard))
    yield hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_soft_limit_is_raised_to_the_connections_and_a_spare(hard: int) -> None:
    assert raise_open_file_limit(1000) is None
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (1000 + SPARE, hard)


def test_short_of_the_hard_limit_it_goes_as_far_as_it_and_says_so(hard: int) -> None:
    if hard == resource.RLIM_INFINITY:  # nothing to fall short of: all of it is granted
        assert raise_open_file_limit(10**6) is None
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (10**6 + SPARE, hard)
        return
    assert raise_open_file_limit(hard) == hard
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)


def test_a_limit_that_is_enough_is_left_alone(hard: int) -> None:
    assert raise_open_file_limit(10) is None
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (300, hard)
