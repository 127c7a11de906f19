// The guide's Historical tab: 30 days of the key series, baselines, trends, growth and capacity.
//
// Raw series only: a recording rule has data only from when Prometheus loaded it, and this tab
// must answer over the whole retention (30 days by default), backfilled data included.
local lib = import 'lib.libsonnet';

function(catalogue, thresholds, overrides={})
  local mixin = lib.mixin(catalogue, thresholds, overrides);
  local c = mixin._config;
  local active = lib.total('wsmon_connections_active');
  local capacity = lib.total('wsmon_pool_capacity');
  local received = lib.rate('wsmon_messages_received_total');
  local latency = 'wsmon_message_latency_seconds';
  local baseline = 'Compare current values against historical baselines.';
  local trends = 'Identify trends that may indicate developing issues.';
  local growth = 'Track system growth and plan capacity accordingly.';
  // One point per day: Grafana's step (min interval) and the window each point covers.
  local daily(expr, legend) = lib.target(expr, legend, interval='1d');
  // The last week's connections as a subquery: predict_linear and deriv need a range of a sum.
  local week = '%s[7d:1h]' % active;

  lib.dashboard(c, 'wsmon-historical', '30 days of the key wsmon series: baselines, week over week, daily peaks, growth and the capacity trend.', [
    [
      lib.timeseries(
        'Connections',
        trends + ' Open connections and the pool capacity of the selected instances.',
        'short',
        [lib.target(active, 'connections'), lib.target(capacity, 'capacity')],
      ),
      lib.timeseries(
        'Messages',
        trends + ' Frames received and sent, client errors and service failures, per second.',
        'cps',
        [
          lib.target(received, 'received'),
          lib.target(lib.rate('wsmon_messages_sent_total'), 'sent'),
          lib.target(lib.rateOrZero('wsmon_client_errors_total'), 'client errors'),
          lib.target(lib.rate('wsmon_message_failures_total'), 'service failures'),
        ],
      ),
    ],
    [
      lib.timeseries(
        'Message success rate',
        baseline + ' 1 - service failures / messages received.',
        'percentunit',
        [lib.target('1 - ' + lib.ratio(lib.rate('wsmon_message_failures_total'), received), 'success')],
        steps=mixin.alert('message_success_rate'),
        min=null,
        w=8,
      ),
      lib.timeseries(
        'Average latency',
        baseline + ' Mean message latency.',
        's',
        [lib.target(lib.mean(latency), 'average')],
        steps=mixin.alert('average_latency'),
        w=8,
      ),
      lib.timeseries(
        'p99 latency',
        baseline + ' 99th percentile of the message latency.',
        's',
        [lib.target(lib.quantile('0.99', latency), 'p99')],
        steps=mixin.alert('p99_latency'),
        w=8,
      ),
    ],
    [
      lib.timeseries(
        'Connections, week over week',
        baseline + ' Open connections now and at the same time a week before.',
        'short',
        [lib.target(active, 'this week'), lib.target(lib.total('wsmon_connections_active', offset='1w'), 'a week before')],
      ),
      lib.timeseries(
        'Messages received, week over week',
        baseline + ' Frames received per second now and at the same time a week before.',
        'cps',
        [
          lib.target(received, 'this week'),
          lib.target(lib.rate('wsmon_messages_received_total', offset='1w'), 'a week before'),
        ],
      ),
    ],
    [
      lib.timeseries(
        'Daily peaks',
        trends + ' The most connections open at once on each day, and the busiest %s of messages received (per second).' % c.rateWindow,
        'short',
        [
          daily('max_over_time(%s[1d:])' % active, 'peak connections'),
          // A per-day point has a day-long $__rate_interval, which would average the peak away:
          // the rate is taken over the alerts' window inside the day instead.
          daily('max_over_time(sum (rate(wsmon_messages_received_total{%s}[%s]))[1d:%s])' % [lib.sel, c.rateWindow, c.rateWindow], 'peak messages/s'),
        ],
      ),
      lib.timeseries(
        'Messages per day',
        growth + ' Frames received and sent on each day.',
        'short',
        [
          daily(lib.increase('wsmon_messages_received_total', '1d'), 'received'),
          daily(lib.increase('wsmon_messages_sent_total', '1d'), 'sent'),
        ],
      ),
    ],
    [
      lib.timeseries(
        'Capacity trend',
        growth + ' Open connections, the capacity, and where the last 7 days\' linear trend puts the connections a week later.',
        'short',
        [
          lib.target(active, 'connections'),
          lib.target(capacity, 'capacity'),
          lib.target('predict_linear(%s, 7 * 86400)' % week, 'trend: in a week'),
        ],
      ),
      lib.stat(
        'Capacity reached on',
        growth + " When the open connections reach the capacity at the last 7 days' linear pace; no value while they are not growing.",
        'dateTimeAsIso',
        // Grafana's date units read milliseconds since the epoch.
        [lib.target('1000 * (time() + (%s - predict_linear(%s, 0)) / (deriv(%s) > 0))' % [capacity, week, week], 'capacity reached')],
        h=8,
      ),
      lib.stat(
        'Growth',
        growth + ' Average open connections over the last 7 days against the 7 days before.',
        'percentunit',
        [lib.target('avg_over_time(%s) / (avg_over_time(%s offset 1w) > 0) - 1' % [week, week], 'connections')],
        h=8,
      ),
    ],
    [
      lib.timeseries(
        'Connections opened per day',
        growth + ' Connections accepted on each day, and on the same day a week before.',
        'short',
        [
          daily(lib.increase('wsmon_connections_opened_total', '1d'), 'opened'),
          daily(lib.increase('wsmon_connections_opened_total', '1d', offset='1w'), 'a week before'),
        ],
      ),
      lib.text(
        'Exporting the data',
        'Data export capabilities: how to take these series out of Prometheus.',
        |||
          **Export.** `wsmon export` writes these series out of Prometheus as CSV or JSON, the
          stored samples themselves (raw series through `query_range`, fetched in pieces under
          Prometheus' 11,000 points per series):

          * `wsmon export --prometheus http://PROMETHEUS:9090 --since 30d --step 5m --output wsmon-30d.csv`
          * `--metric NAME` (repeatable, label matchers allowed) instead of the key series,
            `--format json`, `--since`/`--until` as durations or RFC 3339 times;
            `wsmon export --help` has the rest.

          A single panel's data as shown: the panel menu, **Inspect → Data → Download CSV**.

          Prometheus keeps 15 days unless told otherwise: run it with
          `--storage.tsdb.retention.time=30d` for the guide's 30 days of history.
        |||,
        w=12,
      ),
    ],
  ], time='now-30d', refresh='')
