// The guide's Connection tab: pool status and utilisation, worker distribution, capacity.
local lib = import 'lib.libsonnet';

function(catalogue, thresholds, overrides={})
  local mixin = lib.mixin(catalogue, thresholds, overrides);
  local c = mixin._config;
  local active = lib.total('wsmon_connections_active');
  local capacity = lib.total('wsmon_pool_capacity');
  local perWorker = lib.target(lib.total('wsmon_connections_active', 'instance, worker'), '{{instance}} worker {{worker}}');
  local balanced = 'Worker Utilization: should ideally be balanced across workers.';

  lib.dashboard(c, 'wsmon-connections', 'Connection pool status and utilisation, worker distribution and capacity.', [
    [
      lib.stat(
        'Total connections',
        'Total Connections: actual number of active WebSocket connections.',
        'short',
        [lib.target(active, 'connections')],
      ),
      lib.stat(
        'Max capacity',
        'Max Capacity: maximum number of connections supported (every worker of the selected'
        + ' instances).',
        'short',
        [lib.target(capacity, 'capacity')],
      ),
      lib.stat(
        'Pool utilisation',
        'Percentage of connection pool capacity in use: open connections / capacity, all selected instances together.',
        'percentunit',
        [lib.target(lib.utilisation, 'utilisation')],
        steps=mixin.alert('pool_utilization'),
      ),
      lib.stat(
        'Worker imbalance',
        balanced + ' Connections on the busiest worker / on the idlest, of the most unbalanced instance;'
        + ' judged only from %d connections per worker on average.' % c.imbalanceMinConnectionsPerWorker,
        'none',
        [lib.target('max(%s)' % mixin.recorded('worker_imbalance'), 'busiest / idlest')],
        steps=mixin.alert('worker_imbalance'),
      ),
    ],
    [
      lib.timeseries(
        'Pool utilisation by instance',
        'Connection pool utilisation over time, per instance (the figure the pool alerts judge).',
        'percentunit',
        [lib.target(mixin.recorded('pool_utilization'), '{{instance}}')],
        steps=mixin.alert('pool_utilization'),
      ),
      lib.bargauge(
        'Connections per worker',
        balanced + ' Open connections on each worker now.',
        'short',
        [perWorker { instant: true, range: false }],
      ),
    ],
    [
      lib.timeseries(
        'Connections per worker over time',
        balanced + ' Open connections on each worker.',
        'short',
        [perWorker],
      ),
      lib.timeseries(
        'Worker imbalance by instance',
        balanced + ' Busiest worker / idlest worker, per instance, recorded only from %d connections per worker on average.' % c.imbalanceMinConnectionsPerWorker,
        'none',
        [lib.target(mixin.recorded('worker_imbalance'), '{{instance}}')],
        steps=mixin.alert('worker_imbalance'),
      ),
    ],
    [
      lib.timeseries(
        'Connections opened and closed',
        'Connections accepted, and closed by close code (1000 normal, 1001 going away or drain,'
        + ' 1006 no close frame, 1008 slow consumer or policy, 1009 too large, 1013 at capacity),'
        + ' per second.',
        'cps',
        [
          lib.target(lib.rate('wsmon_connections_opened_total'), 'opened'),
          lib.target(lib.rate('wsmon_connections_closed_total', 'code'), 'closed {{code}}'),
        ],
      ),
      lib.timeseries(
        'Connections refused',
        'Connections refused per second, by reason: capacity (close 1013), draining (close 1001, on purpose during a deploy), no_worker;'
        + ' and (client: …) refused for the client\'s behaviour, never alerted on: origin (403), rate_limited, handshake_timeout.',
        'cps',
        [
          lib.target(lib.rate('wsmon_connections_rejected_total', 'reason'), '{{reason}}'),
          lib.target(lib.rate('wsmon_handshakes_refused_total', 'reason'), 'client: {{reason}}'),
        ],
      ),
    ],
    [
      lib.timeseries(
        'Connection rejection rate by instance',
        'Connections refused outside a drain / connections attempted, per instance.',
        'percentunit',
        [lib.target(mixin.recorded('connection_rejection_rate'), '{{instance}}')],
        steps=mixin.alert('connection_rejection_rate'),
      ),
      lib.timeseries(
        'Slow consumers cut off, peers timed out',
        'Connections closed with 1008 because their unsent data passed send_buffer_limit, per'
        + " interval. One is its client's network; the slow_consumer_ratio alerts judge them only"
        + ' from %d within %s. Timed out: the kernel closed them because their peer stopped' % [c.slowConsumerMinCutoffs, c.rateWindow]
        + ' answering keepalive probes; many at once while clients are fine mean this host drops'
        + ' its own probes (node_softnet_dropped_total; raise net.core.netdev_max_backlog).',
        'short',
        [
          lib.target(lib.increase('wsmon_slow_consumers_disconnected_total', '$__rate_interval'), 'cut off'),
          lib.target(lib.increase('wsmon_connections_timed_out_total', '$__rate_interval'), 'timed out'),
        ],
      ),
    ],
    [
      lib.timeseries(
        'Memory per process',
        'Resident memory of each pool process (worker index, or supervisor).',
        'bytes',
        [lib.target(lib.total('wsmon_process_resident_memory_bytes', 'instance, worker'), '{{instance}} {{worker}}')],
      ),
      lib.timeseries(
        'Open file descriptors per process',
        'Open file descriptors of each pool process: every connection holds one.',
        'short',
        [lib.target(lib.total('wsmon_process_open_fds', 'instance, worker'), '{{instance}} {{worker}}')],
      ),
    ],
    [
      lib.bargauge(
        'Connections by instance',
        'Total Connections of each selected instance now.',
        'short',
        [lib.target(lib.total('wsmon_connections_active', 'instance'), '{{instance}}', instant=true)],
      ),
      lib.timeseries(
        'Connections and capacity by instance',
        'Total Connections and Max Capacity of each selected instance over time.',
        'short',
        [
          lib.target(lib.total('wsmon_connections_active', 'instance'), 'connections {{instance}}'),
          lib.target(lib.total('wsmon_pool_capacity', 'instance'), 'capacity {{instance}}'),
        ],
      ),
    ],
  ])
