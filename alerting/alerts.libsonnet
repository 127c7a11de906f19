// Alerting rules: one per enabled entry of thresholds.yaml, on its indicator's recording rule,
// then wsmon:health:status, the worst severity firing (0 healthy, 1 degraded, 2 unhealthy).
{
  local c = $._config,
  local labelSelector(labels) = std.join(', ', ['%s="%s"' % [k, labels[k]] for k in std.objectFields(labels)]),

  // How each unit's value reads in an annotation (Prometheus template functions).
  local valueTemplate = {
    ratio: '{{ $value | humanizePercentage }}',
    seconds: '{{ $value | humanizeDuration }}',
    factor: '{{ $value | printf "%.2f" }}',
    boolean: '{{ $value }}',
  },

  local byKey = { [i.key]: i for i in $.catalogue },

  // Annotations are joined with `+`: Jsonnet's `%` costs about a millisecond per call, and this
  // runs for every alert.
  alertRule(t):: {
    local indicator = byKey[t.metric],
    local threshold = t.condition + ' ' + t.display,
    local value = valueTemplate[indicator.unit],
    alert: t.name,
    expr: $.indicatorRules[t.metric].record + ' ' + t.condition + ' ' + t.value,
    'for': t['for'],
    labels: c.alertLabels { severity: t.severity, indicator: t.metric },
    annotations: {
      summary: indicator.title + ' ' + threshold + ' on {{ $labels.instance }}',
      description: indicator.title + ' on {{ $labels.instance }} is ' + value + ', past the '
                   + t.severity + ' threshold ' + threshold + ' for ' + t['for']
                   + ' (' + indicator.meaning + ').',
      value: value,
      threshold: threshold,
      runbook_url: c.runbookBaseUrl + '#' + std.asciiLower(t.name),
      dashboard_url: c.dashboardBaseUrl + '/d/' + c.dashboards[t.metric]
                     + '?var-datasource=' + c.datasource + '&var-instance={{ $labels.instance }}',
    },
  },

  healthRule:: {
    record: 'wsmon:health:status',
    expr: |||
      max(
        2 * ALERTS{alertstate="firing", severity="critical", %(selector)s}
        or
        ALERTS{alertstate="firing", severity="warning", %(selector)s}
      )
      or vector(0)
    ||| % { selector: labelSelector(c.alertLabels) },
  },

  prometheusAlerts+:: {
    groups+: [{
      name: 'wsmon.alerts',
      // The health rule comes last: rules of a group run in order, so it sees this round's alerts.
      rules: [$.alertRule(t) for t in $.thresholds if t.enabled] + [$.healthRule],
    }],
  },
}
