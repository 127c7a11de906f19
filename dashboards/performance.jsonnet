// The guide's Performance tab: message latency, broadcast performance, processing times.
local lib = import 'lib.libsonnet';

function(catalogue, thresholds, overrides={})
  local mixin = lib.mixin(catalogue, thresholds, overrides);
  local c = mixin._config;
  local latency = 'wsmon_message_latency_seconds';
  local fanout = 'wsmon_broadcast_duration_seconds';
  local average = 'Average Message Latency: should ideally be <100ms.';
  local maximum = 'Maximum Message Latency: spikes may indicate system congestion.';
  local broadcast = 'Broadcast Time: high values may indicate scaling issues.';
  // A histogram knows no maximum: quantile 1 is the upper bound of the highest bucket observed.
  local max(histogram, by='') = lib.quantile('1', histogram, by);
  local quantiles(histogram) = [
    lib.target(lib.quantile('0.5', histogram), 'p50'),
    lib.target(lib.quantile('0.95', histogram), 'p95'),
    lib.target(lib.quantile('0.99', histogram), 'p99'),
    lib.target(max(histogram), 'max (bucket bound)'),
  ];

  lib.dashboard(c, 'wsmon-performance', 'Message latency, broadcast and fan-out performance, delivery and scrape times.', [
    [
      lib.stat(
        'Average latency',
        average + ' Frame received to handled, all selected instances.',
        's',
        [lib.target(lib.mean(latency), 'average')],
        steps=mixin.alert('average_latency'),
      ),
      lib.stat(
        'p99 latency',
        '99th percentile of the message latency, all selected instances.',
        's',
        [lib.target(lib.quantile('0.99', latency), 'p99')],
        steps=mixin.alert('p99_latency'),
      ),
      lib.stat(
        'Max latency',
        maximum + ' The upper bound of the slowest latency bucket observed.',
        's',
        [lib.target(max(latency), 'max')],
      ),
      lib.stat(
        'Broadcast time (p99)',
        broadcast + " 99th percentile of the time to fan one message out to a worker's recipients.",
        's',
        [lib.target(lib.quantile('0.99', fanout), 'p99')],
        steps=mixin.alert('broadcast_time'),
      ),
    ],
    [
      lib.timeseries(
        'Message latency',
        average + ' ' + maximum + ' p50, p95, p99, max (a bucket bound) and the average, from the latency histogram.',
        's',
        quantiles(latency) + [lib.target(lib.mean(latency), 'average')],
      ),
      lib.heatmap(
        'Message latency heatmap',
        maximum + ' Messages per latency bucket and interval: congestion shows as a band moving up.',
        's',
        [lib.target(lib.increase(latency + '_bucket', '$__rate_interval', 'le'), '{{le}}')],
      ),
    ],
    [
      lib.timeseries(
        'Average latency by instance',
        average + ' Per instance (the figure the alerts judge).',
        's',
        [lib.target(mixin.recorded('average_latency'), '{{instance}}')],
        steps=mixin.alert('average_latency'),
      ),
      lib.timeseries(
        'p99 latency by instance',
        maximum + ' Per instance (the figure the alerts judge).',
        's',
        [lib.target(mixin.recorded('p99_latency'), '{{instance}}')],
        steps=mixin.alert('p99_latency'),
      ),
    ],
    [
      lib.timeseries(
        'Processing time by type',
        'Mean time from frame received to handled, by message type.',
        's',
        [lib.target(lib.mean(latency, 'type'), '{{type}}')],
      ),
      lib.timeseries(
        'p99 processing time by type',
        maximum + ' 99th percentile of the processing time, by message type.',
        's',
        [lib.target(lib.quantile('0.99', latency, 'type'), '{{type}}')],
      ),
    ],
    [
      lib.timeseries(
        'Broadcast time by instance',
        broadcast + ' p99 fan-out time per instance (the figure the alert judges).',
        's',
        [lib.target(mixin.recorded('broadcast_time'), '{{instance}}')],
        steps=mixin.alert('broadcast_time'),
        w=8,
      ),
      lib.timeseries(
        'Fan-out duration by type',
        broadcast + " p50 and p99 of the time to fan one message out to a worker's local recipients, by message type.",
        's',
        [
          lib.target(lib.quantile('0.5', fanout, 'type'), 'p50 {{type}}'),
          lib.target(lib.quantile('0.99', fanout, 'type'), 'p99 {{type}}'),
        ],
        w=8,
      ),
      lib.timeseries(
        'Fan-out size',
        broadcast + ' Local recipients of one fan-out: mean and p99 (a bucket bound).',
        'short',
        [
          lib.target(lib.mean('wsmon_broadcast_recipients'), 'mean'),
          lib.target(lib.quantile('0.99', 'wsmon_broadcast_recipients'), 'p99'),
        ],
        w=8,
      ),
    ],
    [
      lib.timeseries(
        'Delivery delay',
        "Relay delay: sender's frame received (on any worker) to written to a recipient's socket, relayed deliveries across workers included.",
        's',
        quantiles('wsmon_delivery_latency_seconds'),
      ),
      lib.timeseries(
        'Scrape duration',
        "How long Prometheus' scrape of each instance's /metrics took (the supervisor merges every worker's figures).",
        's',
        [lib.target('scrape_duration_seconds{%s}' % lib.sel, '{{instance}}')],
      ),
    ],
  ])
