// The guide's Testing tab: the server, pool and echo checks, as Prometheus runs them through each
// server's GET /probe?module=... (the bundle's probe job), over time and their last result.
//
// The probe's series carry the wsmon instance's own job and instance (the probe job rewrites the
// job), so they take `lib.sel` like every other series. Over several instances a result is the
// worst of them: a probe passed only where it passed on every selected instance, and a duration
// or round trip is the slowest one's.
local lib = import 'lib.libsonnet';

function(catalogue, thresholds, overrides={})
  local mixin = lib.mixin(catalogue, thresholds, overrides);
  local c = mixin._config;
  local server = 'Server Test: verifies basic WebSocket server functionality (handshake, welcome frame, ping answered by its pong).';
  local pool = 'Connection Pool Test: tests worker distribution (several connections per worker held open at once; every worker must take some, evenly).';
  local echo = 'Echo Test: measures round-trip message latency (echo messages through /ws, one at a time).';
  local judged = 'Share of failed runs over %s (the probe_failure alerts judge it per instance, all probes together).' % c.rateWindow;
  // The pool check fails past this spread (most / fewest connections per worker): /probe runs
  // it with selftest's DEFAULT_MAX_SPREAD, which a test holds equal to this.
  local maxSpread = 2;
  local success = 'wsmon_probe_success';
  local probe(name) = 'probe="%s"' % name;
  local passedFailed = [{
    type: 'value',
    options: {
      '1': { text: 'PASSED', color: 'green', index: 0 },
      '0': { text: 'FAILED', color: 'red', index: 1 },
    },
  }];
  // The scrape of /probe itself, apart from a probe that ran and failed: a timeout, a refused
  // connection or a 429 leaves no probe series at all, only the probe job's `up` at 0. That
  // `up` keeps the probe job's name rather than $job, and its instance is the wsmon address the
  // probe job scrapes (the same host:port, or pod address, as wsmon's own job): so it is
  // selected by the job of the config and the dashboard's instances.
  local scrapes = 'up{job="%s", instance=~"$instance"}' % c.deploy.probeJob;
  local scrapeMappings = [{
    type: 'value',
    options: {
      '1': { text: 'UP', color: 'green', index: 0 },
      '0': { text: 'DOWN', color: 'red', index: 1 },
    },
  }];
  local lastResult(title, name, description) = lib.stat(
    title,
    description + ' The last run: PASSED, or FAILED on any selected instance.',
    'none',
    [lib.target(lib.min(success, matchers=probe(name)), name)],
    mappings=passedFailed,
    colorMode='background',
    w=4,
  );
  local figures = ['min', 'avg', 'p50', 'p99', 'max'];
  // One target per figure, in that order, so the legend and the bars read min to max.
  local trips(instant) = [
    lib.target(lib.max('wsmon_probe_echo_round_trip_seconds', matchers='figure="%s"' % f), f, instant=instant)
    for f in figures
  ];
  // 0..1 and drawn as steps: a pass or a fail holds until the next run.
  local outcome = {
    fieldConfig+: { defaults+: { max: 1, mappings: passedFailed, custom+: { lineInterpolation: 'stepAfter' } } },
  };

  lib.dashboard(c, 'wsmon-testing', "The Testing tab's server, pool and echo checks, run by Prometheus through each server's /probe: results, durations, echo round trips, pool distribution.", [
    [
      lastResult('Server test', 'server', server),
      lastResult('Pool test', 'pool', pool),
      lastResult('Echo test', 'echo', echo),
      lib.stat(
        'Failed runs (%s)' % c.rateWindow,
        judged + ' The worst selected instance.',
        'percentunit',
        [lib.target('max(%s)' % mixin.recorded('probe_failure'), 'failed runs')],
        steps=mixin.alert('probe_failure'),
        w=4,
      ),
      lib.stat(
        'Probe scrapes',
        "Prometheus' scrapes of /probe (job %s): DOWN when the last scrape of any module on any selected instance failed (timed out, refused, 429), so that probe left no result." % c.deploy.probeJob,
        'none',
        [lib.target('min(%s)' % scrapes, 'scrapes')],
        mappings=scrapeMappings,
        colorMode='background',
        w=4,
      ),
      lib.stat(
        'Echo round trip (p99)',
        echo + ' The p99 round trip of the last run, the slowest selected instance.',
        's',
        [lib.target(lib.max('wsmon_probe_echo_round_trip_seconds', matchers='figure="p99"'), 'p99')],
        w=4,
      ),
    ],
    [
      lib.timeseries(
        'Probe results',
        server + ' ' + pool + ' ' + echo + ' Each run: 1 passed, 0 failed on any selected instance.',
        'none',
        [lib.target(lib.min(success, 'probe'), '{{probe}}')],
      ) + outcome,
      lib.timeseries(
        'Share of failed runs',
        judged + ' Per instance, and per probe on the worst selected instance over the same window.',
        'percentunit',
        [
          lib.target(mixin.recorded('probe_failure'), '{{instance}} (all probes)'),
          // Over the alerts' window too, so a probe's line reads against the same thresholds.
          lib.target('1 - min by (probe) (avg_over_time(%s{%s}[%s]))' % [success, lib.sel, c.rateWindow], '{{probe}}'),
        ],
        steps=mixin.alert('probe_failure'),
      ),
    ],
    [
      lib.timeseries(
        'Probe duration',
        'How long each check took, start to result, the slowest selected instance.',
        's',
        [lib.target(lib.max('wsmon_probe_duration_seconds', 'probe'), '{{probe}}')],
        w=8,
      ),
      lib.timeseries(
        'Step durations',
        server + ' Each step of the server check (handshake, welcome, ping) and the pool check opening its connections (connect), the slowest selected instance.',
        's',
        [lib.target(lib.max('wsmon_probe_step_duration_seconds', 'probe, step'), '{{probe}} {{step}}')],
        w=8,
      ),
      lib.bargauge(
        'Last run: duration by probe',
        'How long the last run of each check took, the slowest selected instance.',
        's',
        [lib.target(lib.max('wsmon_probe_duration_seconds', 'probe'), '{{probe}}', instant=true)],
        w=8,
      ),
    ],
    [
      lib.timeseries(
        'Echo round trip',
        echo + ' min, avg, p50, p99 and max round trip of each run, the slowest selected instance.',
        's',
        trips(false),
        w=16,
      ),
      lib.bargauge(
        'Last run: echo round trip',
        echo + ' min, avg, p50, p99 and max of the last run, the slowest selected instance.',
        's',
        trips(true),
        w=8,
      ),
    ],
    [
      lib.bargauge(
        'Pool test: connections per worker',
        pool + ' Connections of the last pool run each worker took, per instance: they should be even.',
        'short',
        [lib.target(lib.max('wsmon_probe_pool_connections', 'instance, worker'), '{{instance}} worker {{worker}}', instant=true)],
        w=8,
      ),
      lib.timeseries(
        'Pool test: spread',
        pool + ' Most / fewest connections per worker of each run, per instance; the check fails above %g (the red line). No value for a run where a worker took none.' % maxSpread,
        'none',
        [lib.target(lib.max('wsmon_probe_pool_spread_ratio', 'instance'), '{{instance}}')],
        steps=lib.colours([[maxSpread, 'red']]),
        w=8,
      ),
      lib.timeseries(
        'Pool test: failed connections',
        pool + ' Connections of each run that got no handshake or no welcome, per instance; any fails the check.',
        'short',
        [lib.target(lib.max('wsmon_probe_pool_failed_connections', 'instance'), '{{instance}}')],
        steps=lib.colours([[1, 'red']]),
        w=8,
      ),
    ],
    [
      lib.timeseries(
        'Probe scrapes by module',
        "Prometheus' scrapes of /probe, per module (job %s): 1 answered, 0 failed (timed out, refused, 429). A failed scrape is no probe result at all, unlike a probe that ran and failed." % c.deploy.probeJob,
        'none',
        [lib.target('min by (module) (%s)' % scrapes, '{{module}}')],
      ) + { fieldConfig+: { defaults+: { max: 1, mappings: scrapeMappings, custom+: { lineInterpolation: 'stepAfter' } } } },
      lib.text(
        'Run the tests',
        'Run the server, pool and echo tests by hand: in the browser, or with `wsmon test`.',
        std.join('\n', [
          '**[Run the tests in the browser](http://${instance}/testing)**: the server, pool and echo tests on'
          + " the server's own `/testing` page. Select one instance for the link to work.",
          '',
          'From a shell, against any server, `wsmon test server|pool|echo`:',
          '',
          '* `wsmon test server --url ws://HOST:PORT/ws`: handshake, welcome frame, ping → pong, each step timed',
          '* `wsmon test pool --url ws://HOST:PORT/ws`: connections to every worker, their spread (at most %g)' % maxSpread,
          '* `wsmon test echo --url ws://HOST:PORT/ws --count 100 --size 1024`: min / avg / p50 / p99 / max round trip',
          '',
          'Each exits 0 passed, 1 failed, 2 could not run; `--json` prints the result.',
          '',
        ]),
        w=12,
      ),
    ],
  ])
