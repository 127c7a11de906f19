// The guide's Messages tab: message type distribution, volume, success and error tracking.
local lib = import 'lib.libsonnet';

function(catalogue, thresholds, overrides={})
  local mixin = lib.mixin(catalogue, thresholds, overrides);
  local c = mixin._config;
  local received = lib.rate('wsmon_messages_received_total');
  local failures = lib.rate('wsmon_message_failures_total');
  local clientErrors = lib.rateOrZero('wsmon_client_errors_total');
  local perReceived(counter) = lib.ratio(counter, received);
  local success = 'Message Success Rate: should be >99% in a healthy system.';
  local spikes = 'Error Rates: spikes in errors may indicate system issues.';
  local types = 'Message Types: distribution helps identify which features are most actively using WebSockets.';

  lib.dashboard(c, 'wsmon-messages', 'Message type distribution, volume, success rate and errors.', [
    [
      lib.stat(
        'Message success rate',
        success + ' 1 - messages the server failed to handle / messages received, all selected instances; client errors do not lower it.',
        'percentunit',
        [lib.target('1 - ' + perReceived(failures), 'success')],
        steps=mixin.alert('message_success_rate'),
      ),
      lib.stat(
        'Message error rate',
        spikes + " Messages the server failed to handle for its own reasons / messages received.",
        'percentunit',
        [lib.target(perReceived(failures), 'errors')],
        steps=mixin.alert('message_error_rate'),
      ),
      lib.stat(
        'Client-error ratio',
        spikes + " Messages and frames refused for the client's fault (bad input, rate limit) / messages received: a client release or a scanner, never the service's fault.",
        'percentunit',
        [lib.target(perReceived(clientErrors), 'client errors')],
        steps=mixin.alert('client_error_ratio'),
      ),
      lib.stat('Messages received', 'Message volume: frames received on /ws per second.', 'cps', [lib.target(received, 'received')]),
    ],
    [
      lib.timeseries(
        'Message success rate by instance',
        success + ' Per instance, over the recording rule\'s %s window (the figure the alerts judge).' % c.rateWindow,
        'percentunit',
        [lib.target(mixin.recorded('message_success_rate'), '{{instance}}')],
        steps=mixin.alert('message_success_rate'),
        min=null,
      ),
      lib.bargauge(
        'Messages by type',
        types + ' Frames received in the time range, by message type (invalid: unparseable or unknown).',
        'short',
        [lib.target(lib.increase('wsmon_messages_received_total', '$__range', 'type'), '{{type}}', instant=true)],
      ),
    ],
    [
      lib.timeseries(
        'Message volume',
        'Frames received and sent on /ws (one per recipient), and deliveries written to recipients on any worker (relayed ones included), per second.',
        'cps',
        [
          lib.target(received, 'received'),
          lib.target(lib.rate('wsmon_messages_sent_total'), 'sent'),
          lib.target(lib.rate('wsmon_delivery_latency_seconds_count'), 'delivered'),
        ],
      ),
      lib.timeseries(
        'Received by type',
        types + ' Frames received per second, by message type.',
        'cps',
        [lib.target(lib.rate('wsmon_messages_received_total', 'type'), '{{type}}')],
        stack=true,
      ),
    ],
    [
      lib.timeseries(
        'Errors by reason',
        spikes + " Client errors (the client's fault) and service failures (a handler raised) per second, by error code.",
        'cps',
        [
          lib.target(lib.rate('wsmon_client_errors_total', 'reason'), 'client {{reason}}'),
          lib.target(lib.rate('wsmon_message_failures_total', 'reason'), 'service {{reason}}'),
        ],
      ),
      lib.timeseries(
        'Message error rate by instance',
        spikes + ' Service failures / messages received, per instance.',
        'percentunit',
        [lib.target(mixin.recorded('message_error_rate'), '{{instance}}')],
        steps=mixin.alert('message_error_rate'),
      ),
    ],
    [
      lib.timeseries(
        'Client-error ratio by instance',
        spikes + ' Client errors / messages received, per instance; it may warn, never page.',
        'percentunit',
        [lib.target(mixin.recorded('client_error_ratio'), '{{instance}}')],
        steps=mixin.alert('client_error_ratio'),
      ),
      lib.timeseries(
        'Deliveries dropped',
        'Deliveries not written, per second: slow_consumer (send buffer full), closed (recipient gone).',
        'cps',
        [lib.target(lib.rate('wsmon_deliveries_dropped_total', 'reason'), '{{reason}}')],
      ),
    ],
    [
      lib.timeseries(
        'Sent by type',
        types + ' Frames sent per second, by message type, one per recipient.',
        'cps',
        [lib.target(lib.rate('wsmon_messages_sent_total', 'type'), '{{type}}')],
        stack=true,
      ),
      lib.timeseries(
        'Payload bytes',
        'WebSocket payload bytes per second on /ws and /ws/echo, in and out.',
        'Bps',
        [lib.target(lib.rate('wsmon_message_bytes_total', 'direction'), '{{direction}}')],
      ),
    ],
    [
      lib.timeseries(
        'Received by instance',
        'Message volume: frames received on /ws per second, by instance.',
        'cps',
        [lib.target(lib.rate('wsmon_messages_received_total', 'instance'), '{{instance}}')],
      ),
      lib.timeseries(
        'Sent by instance',
        'Message volume: frames sent on /ws per second (one per recipient), by instance; with a'
        + ' broker, deliveries from other instances are sent here too.',
        'cps',
        [lib.target(lib.rate('wsmon_messages_sent_total', 'instance'), '{{instance}}')],
      ),
    ],
  ])
