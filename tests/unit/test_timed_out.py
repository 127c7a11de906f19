"""A connection the kernel gave up on (ETIMEDOUT) is told apart from one its peer closed or reset:
wsmon_connections_timed_out_total counts only the first. End to end, with the host made to drop
its own keepalive probes, docs/performance.md (fifth round) has the figures: 6,581 of 10,000
healthy idle connections closed, every one counted here."""

from __future__ import annotations

import errno
import os

import pytest

from wsmon.exporter.worker import timed_out


def kernel_error(code: int) -> OSError:
    """The exception the event loop hands connection_lost for a socket error `code`."""
    return OSError(code, os.strerror(code))


def test_a_peer_that_stopped_answering_is_timed_out() -> None:
    error = kernel_error(errno.ETIMEDOUT)
    assert isinstance(error, TimeoutError)  # what OSError makes of ETIMEDOUT
    assert timed_out(error)


@pytest.mark.parametrize(
    "exc",
    [
        None,  # a clean close
        kernel_error(errno.ECONNRESET),  # the peer reset it
        kernel_error(errno.EPIPE),
        TimeoutError("an asyncio timeout, not the kernel's"),
    ],
)
def test_other_ends_are_not(exc: BaseException | None) -> None:
    assert not timed_out(exc)
