"""The metric catalogue: every series wsmon exports, with its kind, help, labels and buckets.

Defined once, here in the core, because the server counts them (wsmon.exporter.metrics), the
alerting mixin writes PromQL and promtool tests over them, and the health checks and dashboards
read them. Label values are bounded enums (worker index, message type, reason, close code); never
a user, room, connection or address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

COUNTER: Final = "counter"
GAUGE: Final = "gauge"
HISTOGRAM: Final = "histogram"

# Sub-millisecond to 10 s; 0.1 and 0.2 are bucket edges because the default thresholds sit there.
LATENCY_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
RECIPIENT_BUCKETS: Final = (
    1,
    2,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    25000,
    50000,
)

# Close codes get their own label value; anything else is "other" so the label stays bounded.
CLOSE_CODES: Final = (
    "1000",
    "1001",
    "1002",
    "1003",
    "1006",
    "1007",
    "1008",
    "1009",
    "1011",
    "1013",
    "4001",  # the token expired (exporter/auth.py)
)
OTHER: Final = "other"
# The /ws message types a client may send (wsmon_messages_received_total's `type`), and the label
# of everything else.
CLIENT_TYPES: Final = (
    "echo",
    "ping",
    "identify",
    "join",
    "leave",
    "chat",
    "notify",
    "subscribe",
    "unsubscribe",
    "publish",
    "broadcast",
)
INVALID: Final = "invalid"
DROP_REASONS: Final = ("slow_consumer", "closed")
FANOUT_TYPES: Final = ("chat", "notify", "publish", "broadcast")


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


CATALOGUE: Final = (
    Spec("wsmon_connections_active", GAUGE, "Open WebSocket connections.", ("worker",)),
    Spec(
        "wsmon_pool_capacity",
        GAUGE,
        "Connections a worker accepts before refusing with 1013.",
        ("worker",),
    ),
    Spec("wsmon_connections_opened_total", COUNTER, "WebSocket connections accepted.", ("worker",)),
    # Apart from wsmon_connections_rejected_total, which the rejection-rate alert reads: these
    # are refused for what the client did, and are shown, never paged on.
    Spec(
        "wsmon_handshakes_refused_total",
        COUNTER,
        "Connections refused for the client's behaviour: unauthenticated (401, no or a bad"
        " token), origin (403, not allowed), rate_limited (too many new connections from one"
        " address), handshake_timeout (sent nothing in time), address_limit and user_limit"
        " (429: the address or the token's user holds its cap of open connections).",
        ("reason",),
    ),
    Spec(
        "wsmon_connections_rejected_total",
        COUNTER,
        "Connections refused: capacity (close 1013), draining (close 1001), no_worker.",
        ("reason",),
    ),
    Spec(
        "wsmon_connections_closed_total",
        COUNTER,
        "WebSocket connections closed, by close code.",
        ("code",),
    ),
    Spec(
        "wsmon_messages_received_total",
        COUNTER,
        "Frames received on /ws, by message type (invalid: anything unparseable or unknown).",
        ("type",),
    ),
    Spec(
        "wsmon_messages_sent_total",
        COUNTER,
        "Frames sent on /ws, by message type, one per recipient.",
        ("type",),
    ),
    Spec(
        "wsmon_client_errors_total",
        COUNTER,
        "Messages and frames refused for the client's fault (bad input, rate limit, RFC 6455 "
        "violation), by message type and error code.",
        ("type", "reason"),
    ),
    Spec(
        "wsmon_message_failures_total",
        COUNTER,
        "Messages the server failed to handle for its own reasons (internal_error: a handler "
        "raised), by message type and reason.",
        ("type", "reason"),
    ),
    Spec(
        "wsmon_message_latency_seconds",
        HISTOGRAM,
        "Frame received to handled and every local recipient enqueued.",
        ("type",),
        LATENCY_BUCKETS,
    ),
    Spec(
        "wsmon_delivery_latency_seconds",
        HISTOGRAM,
        "Sender's frame received (on any worker) to written to a recipient's socket.",
        (),
        LATENCY_BUCKETS,
    ),
    Spec(
        "wsmon_broadcast_duration_seconds",
        HISTOGRAM,
        "Time to fan one message out to a worker's local recipients.",
        ("type",),
        LATENCY_BUCKETS,
    ),
    Spec(
        "wsmon_broadcast_recipients",
        HISTOGRAM,
        "Local recipients of one fan-out.",
        ("type",),
        RECIPIENT_BUCKETS,
    ),
    Spec(
        "wsmon_message_bytes_total",
        COUNTER,
        "WebSocket payload bytes on /ws and /ws/echo, by direction.",
        ("direction",),
    ),
    Spec(
        "wsmon_deliveries_dropped_total",
        COUNTER,
        "Deliveries not written: slow_consumer (send buffer full), closed (recipient gone).",
        ("reason",),
    ),
    Spec(
        "wsmon_connections_timed_out_total",
        COUNTER,
        "Connections the kernel closed because their peer stopped answering (keepalive probes or"
        " retransmissions unanswered, ETIMEDOUT). Many at once while the network is up point at"
        " the host dropping its own probes (node_softnet_dropped_total).",
    ),
    Spec(
        "wsmon_slow_consumers_disconnected_total",
        COUNTER,
        "Connections closed with 1008 because their unsent data passed send_buffer_limit.",
    ),
    Spec(
        "wsmon_worker_restarts_total",
        COUNTER,
        "Worker processes the supervisor restarted after they died.",
        ("worker",),
    ),
    Spec("wsmon_workers_alive", GAUGE, "Worker processes running and connected.", ()),
    # The supervisor's hand-off queue: connections accepted (and past the gate) that wait for room
    # in a worker's hand-off socket (exporter/handoff.py); read from the queues at each scrape.
    Spec(
        "wsmon_handoff_queued",
        GAUGE,
        "Connections accepted and waiting for room in the worker's hand-off socket.",
        ("worker",),
    ),
    Spec(
        "wsmon_handoff_queued_max",
        GAUGE,
        "The most connections waiting at once for the worker's hand-off socket since the"
        " supervisor started (a storm's peak falls between scrapes).",
        ("worker",),
    ),
    # The instance's link to the others through Redis (`broker`); absent without one.
    Spec(
        "wsmon_broker_up",
        GAUGE,
        "1 while the instance publishes to and is subscribed on its broker, else 0.",
    ),
    Spec(
        "wsmon_broker_published_total",
        COUNTER,
        "Deliveries published for the other instances (one per delivery, whichever worker).",
    ),
    Spec(
        "wsmon_broker_received_total",
        COUNTER,
        "Deliveries received from other instances and relayed to every local worker.",
    ),
    Spec(
        "wsmon_broker_lost_total",
        COUNTER,
        "Deliveries for other instances not published: disconnected (the broker unreachable,"
        " or a publish not confirmed), overflow (more than 10,000 waiting).",
        ("reason",),
    ),
    Spec(
        "wsmon_broker_reconnects_total",
        COUNTER,
        "Times the link to the broker came back after it was lost (once per outage).",
    ),
    Spec(
        "wsmon_broker_delay_seconds",
        HISTOGRAM,
        "Publish to receipt of the instance's own deliveries, on its own clock.",
        (),
        LATENCY_BUCKETS,
    ),
    Spec(
        "wsmon_gc_pause_seconds",
        HISTOGRAM,
        "The workers' garbage collections, by generation (2: a full pass); each stalls every"
        " connection of its worker while it runs.",
        ("generation",),
        LATENCY_BUCKETS,
    ),
    Spec("wsmon_workers_configured", GAUGE, "Worker processes the pool should have.", ()),
    # Read from /proc at scrape time; worker is the index, or "supervisor" for the supervisor.
    Spec(
        "wsmon_process_resident_memory_bytes",
        GAUGE,
        "Resident memory of each pool process, in bytes.",
        ("worker",),
    ),
    Spec(
        "wsmon_process_open_fds",
        GAUGE,
        "Open file descriptors of each pool process (every connection holds one).",
        ("worker",),
    ),
    Spec(
        "wsmon_process_cpu_seconds_total",
        COUNTER,
        "User and system CPU time of each pool process, in seconds.",
        ("worker",),
    ),
    Spec(
        "wsmon_process_start_time_seconds",
        GAUGE,
        "Start time of each pool process since the Unix epoch, in seconds.",
        ("worker",),
    ),
)
SPECS: Final = {spec.name: spec for spec in CATALOGUE}

# What GET /probe?module=server|pool|echo answers (blackbox-exporter style: these series exist
# only in a probe's answer, which Prometheus scrapes as a job of its own, never in /metrics).
PROBE_MODULES: Final = ("server", "pool", "echo")
PROBE_STEPS: Final = ("handshake", "welcome", "ping", "connect")
ECHO_FIGURES: Final = ("min", "avg", "p50", "p99", "max")
PROBE_CATALOGUE: Final = (
    Spec("wsmon_probe_success", GAUGE, "1 when the probe passed, 0 when it failed.", ("probe",)),
    Spec(
        "wsmon_probe_duration_seconds",
        GAUGE,
        "How long the probe took, in seconds.",
        ("probe",),
    ),
    Spec(
        "wsmon_probe_step_duration_seconds",
        GAUGE,
        "How long each step of the probe took, in seconds (handshake, welcome, ping; connect).",
        ("probe", "step"),
    ),
    Spec(
        "wsmon_probe_echo_round_trip_seconds",
        GAUGE,
        "Round trip of the echo probe's messages, in seconds: min, avg, p50, p99, max.",
        ("figure",),
    ),
    Spec(
        "wsmon_probe_pool_connections",
        GAUGE,
        "Connections of the pool probe each worker took.",
        ("worker",),
    ),
    Spec(
        "wsmon_probe_pool_spread_ratio",
        GAUGE,
        "Most / fewest connections of the pool probe per worker (absent when one got none).",
    ),
    Spec(
        "wsmon_probe_pool_failed_connections",
        GAUGE,
        "Connections of the pool probe that failed (no handshake, no welcome).",
    ),
)
PROBE_SPECS: Final = {spec.name: spec for spec in PROBE_CATALOGUE}
