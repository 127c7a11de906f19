"""The documented set of figures a threshold can watch, with their units and ranges.

Each key names one recording rule (its PromQL is in rules.libsonnet) and, where the figure can be
computed from the pool's own snapshot, one /api/health check (exporter/health.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from .catalogue import LATENCY_BUCKETS

RATIO: Final = "ratio"  # 0..1, shown as a percentage
SECONDS: Final = "seconds"
FACTOR: Final = "factor"  # a plain multiple, e.g. busiest worker / idlest worker
BOOLEAN: Final = "boolean"  # 0 or 1


@dataclass(frozen=True)
class Indicator:
    key: str
    title: str
    unit: str
    low: float
    high: float
    meaning: str
    # False for a figure that clients drive: its thresholds may warn but never page (critical),
    # so one abusive client cannot wake on-call or take the instance out of a load balancer.
    may_page: bool = True

    def display(self, value: float) -> str:
        """The value as an admin writes it in prose: 1%, 100ms, 1.5."""
        if self.unit == RATIO:
            return f"{value * 100:g}%"
        if self.unit == SECONDS:
            return f"{value * 1000:g}ms" if value < 1 else f"{value:g}s"
        return f"{value:g}"

    def range_text(self) -> str:
        if self.unit == RATIO:
            return "a ratio between 0 and 1 (1 % is 0.01)"
        if self.unit == SECONDS:
            upper = "" if math.isinf(self.high) else f" and at most {self.high:g}"
            return f"seconds, at least {self.low:g}{upper} (100 ms is 0.1)"
        if self.unit == BOOLEAN:
            return "0 or 1"
        return f"a number of at least {self.low:g}"


# Worker imbalance means something only under real load: at least this many connections per
# worker on average (a pool of 3 connections spread 2/1 is not unbalanced).
IMBALANCE_MIN_CONNECTIONS_PER_WORKER: Final = 10

# A slow consumer or two is their own network (a phone in a tunnel); this many cut off within one
# window is a pattern worth a look: the network in between, or a server too slow to write.
SLOW_CONSUMER_MIN_CUTOFFS: Final = 10

# A histogram quantile can never exceed the largest finite bucket bound.
_LONGEST: Final = LATENCY_BUCKETS[-1]

INDICATORS: Final = (
    Indicator(
        "message_error_rate",
        "Message error rate",
        RATIO,
        0.0,
        1.0,
        "messages the server failed to handle for its own reasons / messages received; client "
        "errors do not count",
    ),
    Indicator(
        "message_success_rate",
        "Message success rate",
        RATIO,
        0.0,
        1.0,
        "1 - message error rate: only the server's own failures lower it",
    ),
    Indicator(
        "client_error_ratio",
        "Client error ratio",
        RATIO,
        0.0,
        1.0,
        "messages and frames refused for the client's fault (bad input, rate limit) / messages "
        "received",
        may_page=False,
    ),
    Indicator(
        "average_latency",
        "Average message latency",
        SECONDS,
        0.0,
        math.inf,
        "mean time from frame received to handled",
    ),
    Indicator(
        "p99_latency",
        "p99 message latency",
        SECONDS,
        0.0,
        _LONGEST,
        "99th percentile of the time from frame received to handled",
    ),
    Indicator(
        "pool_utilization",
        "Pool utilisation",
        RATIO,
        0.0,
        1.0,
        "open connections / connection capacity of all workers",
    ),
    Indicator(
        "connection_rejection_rate",
        "Connection rejection rate",
        RATIO,
        0.0,
        1.0,
        "connections refused outside a drain / connections attempted",
    ),
    Indicator(
        "worker_imbalance",
        "Worker imbalance",
        FACTOR,
        1.0,
        math.inf,
        "connections on the busiest worker / on the idlest, judged only under real load",
    ),
    Indicator(
        "slow_consumer_ratio",
        "Slow consumers cut off",
        RATIO,
        0.0,
        1.0,
        "slow consumers cut off in the window / (those + the connections open), judged only"
        f" when at least {SLOW_CONSUMER_MIN_CUTOFFS} are",
    ),
    Indicator(
        "broadcast_time",
        "p99 broadcast fan-out time",
        SECONDS,
        0.0,
        _LONGEST,
        "99th percentile of the time to fan one message out to a worker's recipients",
    ),
    Indicator(
        "probe_failure",
        "Probe failure rate",
        RATIO,
        0.0,
        1.0,
        "share of synthetic probe runs that failed, from wsmon_probe_success",
    ),
    Indicator(
        "instance_down",
        "Instance down",
        BOOLEAN,
        0.0,
        1.0,
        "1 when Prometheus's last scrape of the instance failed, as up == 0",
    ),
    # The broker between instances (`broker`): an instance without one exports none of its
    # series, so these three record nothing and no alert on them can fire there.
    Indicator(
        "broker_down",
        "Broker down",
        BOOLEAN,
        0.0,
        1.0,
        "1 while the instance is not both publishing to and subscribed on its broker, as"
        " wsmon_broker_up == 0: deliveries to and from the other instances are lost",
    ),
    Indicator(
        "broker_loss_ratio",
        "Broker deliveries lost",
        RATIO,
        0.0,
        1.0,
        "deliveries for the other instances not published, for an unreachable broker, an"
        " unconfirmed publish or more than 10,000 waiting / all deliveries for them",
    ),
    Indicator(
        "broker_delay",
        "p99 broker delay",
        SECONDS,
        0.0,
        _LONGEST,
        "99th percentile of the broker's round trip: an instance's own delivery published to"
        " received back, on its own clock",
    ),
)
BY_KEY: Final = {indicator.key: indicator for indicator in INDICATORS}
