// Recording rules: one per indicator of alerting/indicators.py (the keys thresholds.yaml names),
// computed per wsmon instance. Alerts read these names, never the raw PromQL, and so do the
// dashboards (dashboards/), apart from the Historical one.
//
// Every division keeps only a positive denominator (`> 0`) and every quantile only a window with
// observations, so an idle server records nothing instead of NaN and no alert fires on 0/0.
{
  local c = $._config { by: $._config.instanceLabels, sel: $._config.wsmonSelector, w: $._config.rateWindow },

  // A counter's rate per message received. A server that never counted one has no series of it
  // yet: that counts as 0, not as no figure at all.
  perReceived(counter):: |||
    (
      sum by (%(by)s) (rate(%(counter)s{%(sel)s}[%(w)s]))
      or
      0 * sum by (%(by)s) (rate(wsmon_messages_received_total{%(sel)s}[%(w)s]))
    )
    /
    (sum by (%(by)s) (rate(wsmon_messages_received_total{%(sel)s}[%(w)s])) > 0)
  ||| % (c { counter: counter }),

  // indicator key -> { record, expr }; in evaluation order (a rule may read an earlier one).
  indicatorRules:: {
    // The service is judged by its own failures only (a handler that raised); client errors
    // have their own figure below, which may warn but never page.
    message_error_rate: {
      record: 'wsmon:message_error_rate:ratio_rate' + c.w,
      expr: $.perReceived('wsmon_message_failures_total'),
    },
    message_success_rate: {
      record: 'wsmon:message_success_rate:ratio_rate' + c.w,
      expr: '1 - %s\n' % $.indicatorRules.message_error_rate.record,
    },
    client_error_ratio: {
      record: 'wsmon:client_error_ratio:ratio_rate' + c.w,
      expr: $.perReceived('wsmon_client_errors_total'),
    },
    average_latency: {
      record: 'wsmon:message_latency_seconds:avg_rate' + c.w,
      expr: |||
        sum by (%(by)s) (rate(wsmon_message_latency_seconds_sum{%(sel)s}[%(w)s]))
        /
        (sum by (%(by)s) (rate(wsmon_message_latency_seconds_count{%(sel)s}[%(w)s])) > 0)
      ||| % c,
    },
    p99_latency: {
      record: 'wsmon:message_latency_seconds:p99_rate' + c.w,
      expr: |||
        histogram_quantile(0.99, sum by (%(by)s, le) (rate(wsmon_message_latency_seconds_bucket{%(sel)s}[%(w)s])))
        and on (%(by)s)
        (sum by (%(by)s) (rate(wsmon_message_latency_seconds_count{%(sel)s}[%(w)s])) > 0)
      ||| % c,
    },
    pool_utilization: {
      record: 'wsmon:pool_utilization:ratio',
      expr: |||
        sum by (%(by)s) (wsmon_connections_active{%(sel)s})
        /
        (sum by (%(by)s) (wsmon_pool_capacity{%(sel)s}) > 0)
      ||| % c,
    },
    connection_rejection_rate: {
      record: 'wsmon:connection_rejection_rate:ratio_rate' + c.w,
      // A drain refuses connections on purpose (a deploy); only the other reasons degrade service.
      expr: |||
        sum by (%(by)s) (rate(wsmon_connections_rejected_total{%(sel)s, reason!="draining"}[%(w)s]))
        /
        (
          (
            sum by (%(by)s) (rate(wsmon_connections_opened_total{%(sel)s}[%(w)s]))
            +
            sum by (%(by)s) (rate(wsmon_connections_rejected_total{%(sel)s, reason!="draining"}[%(w)s]))
          )
          > 0
        )
      ||| % c,
    },
    worker_imbalance: {
      record: 'wsmon:worker_imbalance:ratio',
      // An idle worker counts as 1 connection, so a worker left empty shows as the busiest's count.
      expr: |||
        max by (%(by)s) (wsmon_connections_active{%(sel)s})
        /
        clamp_min(min by (%(by)s) (wsmon_connections_active{%(sel)s}), 1)
        and on (%(by)s)
        (
          sum by (%(by)s) (wsmon_connections_active{%(sel)s})
          >=
          %(imbalanceMinConnectionsPerWorker)d * count by (%(by)s) (wsmon_connections_active{%(sel)s})
        )
      ||| % c,
    },
    slow_consumer_ratio: {
      record: 'wsmon:slow_consumer_ratio:ratio_increase' + c.w,
      // Those cut off have left the gauge: the share is of those open now plus those cut off.
      expr: |||
        sum by (%(by)s) (increase(wsmon_slow_consumers_disconnected_total{%(sel)s}[%(w)s]))
        /
        (
          sum by (%(by)s) (increase(wsmon_slow_consumers_disconnected_total{%(sel)s}[%(w)s]))
          +
          sum by (%(by)s) (wsmon_connections_active{%(sel)s})
        )
        and on (%(by)s)
        (
          sum by (%(by)s) (increase(wsmon_slow_consumers_disconnected_total{%(sel)s}[%(w)s]))
          >=
          %(slowConsumerMinCutoffs)d
        )
      ||| % c,
    },
    broadcast_time: {
      record: 'wsmon:broadcast_duration_seconds:p99_rate' + c.w,
      expr: |||
        histogram_quantile(0.99, sum by (%(by)s, le) (rate(wsmon_broadcast_duration_seconds_bucket{%(sel)s}[%(w)s])))
        and on (%(by)s)
        (sum by (%(by)s) (rate(wsmon_broadcast_duration_seconds_count{%(sel)s}[%(w)s])) > 0)
      ||| % c,
    },
    probe_failure: {
      // wsmon_probe_success{probe}: 1 when a synthetic probe run passed, 0 when it failed.
      record: 'wsmon:probe_failure:ratio_avg' + c.w,
      expr: |||
        1 - avg by (%(by)s) (avg_over_time(wsmon_probe_success{%(sel)s}[%(w)s]))
      ||| % c,
    },
    instance_down: {
      record: 'wsmon:instance_down:bool',
      expr: '1 - up{%(sel)s}\n' % c,
    },
    // The broker's series exist only on an instance started with one (`--broker`): without,
    // these record nothing, so their alerts cannot fire.
    broker_down: {
      record: 'wsmon:broker_down:bool',
      expr: '1 - min by (%(by)s) (wsmon_broker_up{%(sel)s})\n' % c,
    },
    // Every reason: an outage (`disconnected`, which WsmonBrokerDown pages for once it lasts),
    // a link that drops and comes back between scrapes, and `overflow` (Redis slower than the
    // instance). Both counters exist from start-up, so an idle link records nothing (0 / 0).
    broker_loss_ratio: {
      record: 'wsmon:broker_loss:ratio_rate' + c.w,
      expr: |||
        sum by (%(by)s) (rate(wsmon_broker_lost_total{%(sel)s}[%(w)s]))
        /
        (
          (
            sum by (%(by)s) (rate(wsmon_broker_lost_total{%(sel)s}[%(w)s]))
            +
            sum by (%(by)s) (rate(wsmon_broker_published_total{%(sel)s}[%(w)s]))
          )
          > 0
        )
      ||| % c,
    },
    broker_delay: {
      record: 'wsmon:broker_delay_seconds:p99_rate' + c.w,
      expr: |||
        histogram_quantile(0.99, sum by (%(by)s, le) (rate(wsmon_broker_delay_seconds_bucket{%(sel)s}[%(w)s])))
        and on (%(by)s)
        (sum by (%(by)s) (rate(wsmon_broker_delay_seconds_count{%(sel)s}[%(w)s])) > 0)
      ||| % c,
    },
  },

  prometheusRules+:: {
    groups+: [{
      name: 'wsmon.rules',
      rules: [
        $.indicatorRules[i.key]
        for i in $.catalogue
      ],
    }],
  },
}
