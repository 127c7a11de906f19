// The guide's Alerts tab: active and acknowledged alerts, the thresholds, email notifications.
//
// Alerts come from Prometheus' own ALERTS series; acknowledged ones (silenced in Alertmanager by
// `wsmon alerts ack`), silences and emails from Alertmanager's metrics, which Prometheus scrapes
// as `alertmanagerSelector`. Several Alertmanager replicas each count the same alerts and
// silences, so those are taken as the max over replicas, never summed.
local lib = import 'lib.libsonnet';

function(catalogue, thresholds, overrides={})
  local mixin = lib.mixin(catalogue, thresholds, overrides);
  local c = mixin._config;
  local labels = std.join(', ', ['%s="%s"' % [k, c.alertLabels[k]] for k in std.objectFields(c.alertLabels)]);
  local alerts(state, extra='') = 'ALERTS{alertstate="%s", %s, %s%s}' % [state, labels, lib.sel, extra];
  local count(expr) = 'count(%s) or vector(0)' % expr;
  local am(metric, matchers) = '%s{%s, %s}' % [metric, c.alertmanagerSelector, matchers];
  local email = 'integration="email"';
  local emails(metric) = 'sum(increase(%s[$__range]))' % am(metric, email);
  local view = 'View Alerts: active alerts are displayed with severity indicators.';
  local acknowledge = 'Acknowledge Alerts: mark alerts as handled once addressed (`wsmon alerts ack` silences them in Alertmanager).';
  local configure = 'Configure Thresholds: set when alerts should trigger.';
  local titles = { [i.key]: i.title for i in catalogue.indicators };
  // Runbooks are each server's own /runbooks page unless the build was given a wiki: then the
  // link goes through the `instance` variable, which holds one instance when an alert email's
  // dashboard link opened this page (it selects the alert's instance).
  local perInstance = std.length(std.findSubstr('{{ $labels.instance }}', c.runbookBaseUrl)) > 0;
  local runbooks = std.strReplace(c.runbookBaseUrl, '{{ $labels.instance }}', '${instance}');
  local runbook(name) = '[%s](%s#%s)' % [name, runbooks, std.asciiLower(name)];
  // The condition in backticks: a bare `<` could open an HTML tag in Grafana's markdown.
  local table = std.join('\n', [
    '| alert | metric | condition | value | for | severity | enabled |',
    '|---|---|---|---|---|---|---|',
  ] + [
    '| %s | %s (`%s`) | `%s` | %s | %s | %s | %s |' % [
      runbook(t.name), titles[t.metric], t.metric, t.condition, t.display, t['for'], t.severity, if t.enabled then 'yes' else 'no',
    ]
    for t in thresholds
  ]);

  lib.dashboard(c, 'wsmon-health', 'Active and acknowledged alerts, the configured thresholds, and email notifications.', [
    [
      lib.stat(
        'Critical alerts firing',
        view + ' wsmon alerts of severity critical firing now.',
        'short',
        [lib.target(count(alerts('firing', ', severity="critical"')), 'critical')],
        steps=lib.colours([[1, 'red']]),
        w=5,
      ),
      lib.stat(
        'Warnings firing',
        view + ' wsmon alerts of severity warning firing now.',
        'short',
        [lib.target(count(alerts('firing', ', severity="warning"')), 'warning')],
        steps=lib.colours([[1, 'yellow']]),
        w=5,
      ),
      lib.stat(
        'Pending alerts',
        view + ' Conditions met but not yet for their `for` duration.',
        'short',
        [lib.target(count(alerts('pending')), 'pending')],
        w=5,
      ),
      lib.stat(
        'Acknowledged alerts',
        acknowledge + ' Alerts Alertmanager holds back now (silenced or inhibited).',
        'short',
        [lib.target('max(%s)' % am('alertmanager_alerts', 'state="suppressed"'), 'acknowledged')],
        w=5,
      ),
      lib.stat(
        'Active silences',
        acknowledge + ' Silences in force in Alertmanager.',
        'short',
        [lib.target('max(%s)' % am('alertmanager_silences', 'state="active"'), 'silences')],
        w=4,
      ),
    ],
    [
      lib.table(
        'Firing alerts',
        view + ' Every wsmon alert firing now, with its labels.',
        'none',
        [lib.target(alerts('firing'), instant=true)],
        hide=['Time', 'Value', '__name__', 'alertstate'],
      ),
    ],
    [
      lib.timeseries(
        'Alerts by severity',
        view + ' wsmon alerts firing, by severity.',
        'short',
        [lib.target('count by (severity) (%s)' % alerts('firing'), '{{severity}}')],
      ),
      lib.timeseries(
        'Acknowledged alerts and silences',
        acknowledge + " Alertmanager's alerts by state (active, suppressed: silenced or inhibited) and its active silences.",
        'short',
        [
          lib.target('max by (state) (%s)' % am('alertmanager_alerts', 'state=~"active|suppressed"'), '{{state}}'),
          lib.target('max(%s)' % am('alertmanager_silences', 'state="active"'), 'silences'),
        ],
      ),
    ],
    [
      lib.stat(
        'Emails sent',
        'Email notification settings: alert emails Alertmanager delivered in the time range.',
        'short',
        [lib.target('%s - %s' % [emails('alertmanager_notifications_total'), emails('alertmanager_notifications_failed_total')], 'sent', instant=true)],
        h=8,
      ),
      lib.stat(
        'Emails failed',
        'Email notification settings: alert emails that failed in the time range (check the SMTP settings: wsmon alerts render-config).',
        'short',
        [lib.target(emails('alertmanager_notifications_failed_total'), 'failed', instant=true)],
        steps=lib.colours([[1, 'red']]),
        h=8,
      ),
      lib.timeseries(
        'Email notifications',
        'Email notification settings: email attempts (failed ones included) and failures per second.',
        'cps',
        [
          lib.target('sum(rate(%s[$__rate_interval]))' % am('alertmanager_notifications_total', email), 'attempted'),
          lib.target('sum(rate(%s[$__rate_interval]))' % am('alertmanager_notifications_failed_total', email), 'failed'),
        ],
      ),
    ],
    [
      lib.text(
        'Alert thresholds',
        configure + ' The thresholds the alert rules were built from (alerting/thresholds.yaml).',
        configure + ' Edit `alerting/thresholds.yaml`, then `make rules` and `make dashboards`:'
        + ' the rules and every threshold line on these dashboards come from the same file.\n\n' + table + '\n',
        w=16,
        h=14,
      ),
      lib.text(
        'Silences and runbooks',
        acknowledge + ' Where to acknowledge an alert and what to do about it.',
        std.join('\n', [
          '* [Alertmanager: alerts](%s/#/alerts)' % c.alertmanagerUrl,
          '* [Alertmanager: silences](%s/#/silences) (`wsmon alerts ack` and `unack` make and expire them)' % c.alertmanagerUrl,
          '* [Grafana: silences](%s/alerting/silences)' % c.dashboardBaseUrl,
          '* [Runbooks](%s), one section per alert; each alert email links its own.%s' % [
            runbooks,
            if perInstance then " They are every wsmon server's own page: select one instance for the link to work." else '',
          ],
          '',
        ]),
        w=8,
        h=14,
      ),
    ],
  ])
