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
  local broker = 'wsmon_broker_delay_seconds';
  local gc = 'wsmon_gc_pause_seconds';
  local withBroker = ' Only instances started with --broker have these series (none without).';
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
        w=8,
      ),
      lib.timeseries(
        'Scrape duration',
        "How long Prometheus' scrape of each instance's /metrics took (the supervisor merges every worker's figures).",
        's',
        [lib.target('scrape_duration_seconds{%s}' % lib.sel, '{{instance}}')],
        w=8,
      ),
      lib.timeseries(
        'Garbage-collection pauses',
        'Maximum Message Latency spikes a worker causes itself: p99 and max (a bucket bound) of'
        + " the workers' garbage collections, by generation (2 is a full pass). Each stalls every"
        + ' connection of its worker while it runs; workers keep the connections they hold out of'
        + ' the full passes, so a full pass over 100 ms is worth a look.',
        's',
        [
          lib.target(lib.quantile('0.99', gc, 'generation'), 'p99 gen {{generation}}'),
          lib.target(max(gc, 'generation'), 'max gen {{generation}}'),
        ],
        w=8,
      ),
    ],
    // The broker between instances (Redis pub/sub): each instance side by side.
    [
      lib.stat(
        'Broker link',
        'Each instance\'s link to its broker: Up while it publishes to and is subscribed on'
        + ' Redis, Down while deliveries between it and the other instances are lost (wsmon:broker_down:bool).'
        + withBroker,
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
      ),
      lib.stat(
        'Broker delay (p99)',
        'Broadcast Time between instances: 99th percentile of the broker\'s round trip (an'
        + ' instance\'s own delivery published to received back), all selected instances.' + withBroker,
        's',
        [lib.target(lib.quantile('0.99', broker), 'p99')],
        steps=mixin.alert('broker_delay'),
      ),
      lib.stat(
        'Broker deliveries lost',
        'Deliveries for the other instances not published in the time range (broker unreachable,'
        + ' publish not confirmed, more than 10,000 waiting), all selected instances. Any is a message'
        + ' users on other instances never got.' + withBroker,
        'short',
        [lib.target(lib.increase('wsmon_broker_lost_total', '$__range'), 'lost', instant=true)],
        steps=lib.colours([[1, 'yellow']]),
      ),
      lib.stat(
        'Broker reconnects',
        'Times the link to the broker came back after it was lost (once per outage) in the time'
        + ' range, all selected instances.' + withBroker,
        'short',
        [lib.target(lib.increase('wsmon_broker_reconnects_total', '$__range'), 'reconnects', instant=true)],
        steps=lib.colours([[1, 'yellow']]),
      ),
    ],
    [
      lib.timeseries(
        'Broker delay by instance',
        'p50 and p99 of the broker\'s round trip, per instance: what every recipient on another'
        + ' instance waits on top of the sender\'s own handling.' + withBroker,
        's',
        [
          lib.target(lib.quantile('0.5', broker, 'instance'), 'p50 {{instance}}'),
          lib.target(lib.quantile('0.99', broker, 'instance'), 'p99 {{instance}}'),
        ],
      ),
      lib.timeseries(
        'Broker delay p99 by instance',
        'p99 of the broker\'s round trip per instance over the recording rule\'s %s window (the'
        % c.rateWindow + ' figure the alerts judge).' + withBroker,
        's',
        [lib.target(mixin.recorded('broker_delay'), '{{instance}}')],
        steps=mixin.alert('broker_delay'),
      ),
    ],
    [
      lib.timeseries(
        'Broker deliveries by instance',
        'Per second and instance: deliveries published for the other instances, received from'
        + ' them (and relayed to every local worker), and lost by reason (disconnected: the broker'
        + ' unreachable or a publish not confirmed; overflow: more than 10,000 waiting).' + withBroker,
        'cps',
        [
          lib.target(lib.rate('wsmon_broker_published_total', 'instance'), 'published {{instance}}'),
          lib.target(lib.rate('wsmon_broker_received_total', 'instance'), 'received {{instance}}'),
          lib.target(lib.rate('wsmon_broker_lost_total', 'instance, reason'), 'lost {{reason}} {{instance}}'),
        ],
        w=8,
      ),
      lib.timeseries(
        'Broker loss ratio by instance',
        'Deliveries lost / deliveries for the other instances, per instance over the recording'
        + " rule's %s window (the figure the alerts judge)." % c.rateWindow + withBroker,
        'percentunit',
        [lib.target(mixin.recorded('broker_loss_ratio'), '{{instance}}')],
        steps=mixin.alert('broker_loss_ratio'),
        w=8,
      ),
      lib.timeseries(
        'Broker reconnects by instance',
        'Times the link to the broker came back after an outage, per interval and instance: a'
        + ' steady trickle is a link that drops again and again.' + withBroker,
        'short',
        [lib.target(lib.increase('wsmon_broker_reconnects_total', '$__rate_interval', 'instance'), '{{instance}}')],
        w=8,
      ),
    ],
  ])
