// The guide's Dashboard Overview: the health badge and the key figures of the selected instances.
local lib = import 'lib.libsonnet';

function(catalogue, thresholds, overrides={})
  local mixin = lib.mixin(catalogue, thresholds, overrides);
  local c = mixin._config;
  local received = lib.rate('wsmon_messages_received_total');
  local clientErrors = lib.rateOrZero('wsmon_client_errors_total');
  local failures = lib.rate('wsmon_message_failures_total');

  lib.dashboard(c, 'wsmon-overview', 'Health and key figures of the wsmon pool at a glance.', [
    [
      lib.stat(
        'Health',
        // wsmon:health:status is one figure for the whole service (the worst alert firing on any
        // instance), so it takes no instance selector.
        'Health Status Badge: Green (Healthy): all systems operating normally; Yellow (Degraded):'
        + ' performance issues detected; Red (Unhealthy): critical issues affecting functionality.'
        + ' The worst severity of the wsmon alerts firing on any instance (wsmon:health:status).',
        'none',
        [lib.target('wsmon:health:status', 'health')],
        steps=lib.colours([[1, 'yellow'], [2, 'red']]),
        mappings=[{
          type: 'value',
          options: {
            '0': { text: 'Healthy', color: 'green', index: 0 },
            '1': { text: 'Degraded', color: 'yellow', index: 1 },
            '2': { text: 'Unhealthy', color: 'red', index: 2 },
          },
        }],
        colorMode='background',
      ),
      lib.stat(
        'Active connections',
        'Active Connections: current number of WebSocket connections, on all selected instances.',
        'short',
        [lib.target(lib.total('wsmon_connections_active'), 'connections')],
      ),
      lib.stat(
        'Pool utilisation',
        'Pool Utilization: percentage of connection pool capacity in use (open connections / the'
        + ' capacity of every worker of the selected instances).',
        'percentunit',
        [lib.target(lib.utilisation, 'utilisation')],
        steps=mixin.alert('pool_utilization'),
      ),
      lib.stat(
        'Workers alive',
        'Worker processes running and connected, beside those the pools should have.',
        'short',
        [
          lib.target(lib.total('wsmon_workers_alive'), 'alive'),
          lib.target(lib.total('wsmon_workers_configured'), 'configured'),
        ],
      ),
    ],
    [
      lib.stat('Messages received', 'Message Statistics: frames received on /ws per second.', 'cps', [lib.target(received, 'received')]),
      lib.stat(
        'Messages sent',
        'Message Statistics: frames sent on /ws per second, one per recipient.',
        'cps',
        [lib.target(lib.rate('wsmon_messages_sent_total'), 'sent')],
      ),
      lib.stat(
        'Client errors',
        "Message Statistics: messages and frames refused for the client's fault (bad input, rate"
        + ' limit, protocol violation) per second. They never count against the service.',
        'cps',
        [lib.target(clientErrors, 'client errors')],
      ),
      lib.stat(
        'Service failures',
        'Message Statistics: messages the server failed to handle for its own reasons (a handler'
        + ' raised) per second; only these lower the message success rate.',
        'cps',
        [lib.target(failures, 'failures')],
      ),
    ],
    [
      lib.stat(
        'Average latency',
        'Performance Metrics: average message latency, frame received to handled.',
        's',
        [lib.target(lib.mean('wsmon_message_latency_seconds'), 'average')],
        steps=mixin.alert('average_latency'),
        w=8,
      ),
      lib.stat(
        'p99 latency',
        'Performance Metrics: 99th percentile of the message latency.',
        's',
        [lib.target(lib.quantile('0.99', 'wsmon_message_latency_seconds'), 'p99')],
        steps=mixin.alert('p99_latency'),
        w=8,
      ),
      lib.stat(
        'Broadcast time (p99)',
        "Performance Metrics: broadcast times, the 99th percentile of the time to fan one message out to a worker's recipients.",
        's',
        [lib.target(lib.quantile('0.99', 'wsmon_broadcast_duration_seconds'), 'p99')],
        steps=mixin.alert('broadcast_time'),
        w=8,
      ),
    ],
    [
      lib.timeseries(
        'Messages',
        'Message Statistics over time: received, sent, client errors and service failures per second.',
        'cps',
        [
          lib.target(received, 'received'),
          lib.target(lib.rate('wsmon_messages_sent_total'), 'sent'),
          lib.target(clientErrors, 'client errors'),
          lib.target(failures, 'service failures'),
        ],
      ),
      lib.timeseries(
        'Latency',
        'Performance Metrics over time: average and p99 message latency, and p99 broadcast time.',
        's',
        [
          lib.target(lib.mean('wsmon_message_latency_seconds'), 'average'),
          lib.target(lib.quantile('0.99', 'wsmon_message_latency_seconds'), 'p99'),
          lib.target(lib.quantile('0.99', 'wsmon_broadcast_duration_seconds'), 'broadcast p99'),
        ],
      ),
    ],
    // The instances side by side.
    [
      lib.timeseries(
        'Active connections by instance',
        'Active Connections of each selected instance.',
        'short',
        [lib.target(lib.total('wsmon_connections_active', 'instance'), '{{instance}}')],
        w=8,
      ),
      lib.timeseries(
        'Messages received by instance',
        'Message Statistics: frames received on /ws per second, by instance.',
        'cps',
        [lib.target(lib.rate('wsmon_messages_received_total', 'instance'), '{{instance}}')],
        w=8,
      ),
      lib.stat(
        'Broker link by instance',
        'Each instance\'s link to the others through its broker (Redis): Up, or Down while'
        + ' deliveries between instances are lost (WsmonBrokerDown pages, and the Health badge'
        + ' turns Unhealthy, once it lasts). No data: no instance runs with --broker.',
        'none',
        [lib.target(mixin.recorded('broker_down'), '{{instance}}')],
        steps=mixin.alert('broker_down'),
        mappings=[{
          type: 'value',
          options: {
            '0': { text: 'Up', color: 'green', index: 0 },
            '1': { text: 'Down', color: 'red', index: 1 },
          },
        }],
        colorMode='background',
        w=8,
        h=8,
      ),
    ],
  ])
