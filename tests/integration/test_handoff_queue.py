"""The hand-off queue's series on a real pool's /metrics: one per worker, 0 at rest, and still 0
after connections that found room at once (the bench's storm section drives them up)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import WsmonServer

pytestmark = pytest.mark.integration

SERIES = ("wsmon_handoff_queued", "wsmon_handoff_queued_max")


async def test_each_worker_has_both_series_at_zero_at_rest(server: WsmonServer) -> None:
    pool = await server.connect_many(20)
    assert len(pool) == 20
    scrape = await server.scrape()
    for name in SERIES:
        assert {dict(labels)["worker"]: value for labels, value in scrape.series(name).items()} == {
            "0": 0,
            "1": 0,
        }
