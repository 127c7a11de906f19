// Alertmanager: email per severity, grouped by alert and instance, critical silencing its warnings.
{
  local c = $._config,
  local am = c.alertmanager,
  local smtp = c.smtp,
  local alternatives(values) = std.join('|', values),

  emailConfig(to):: {
    to: to,
    from: smtp.from,
    smarthost: smtp.smarthost,
    require_tls: smtp.requireTls,
    send_resolved: true,
    headers: { Subject: '{{ template "wsmon.email.subject" . }}' },
    html: '{{ template "wsmon.email.html" . }}',
    text: '{{ template "wsmon.email.text" . }}',
  } + (
    // A relay that needs no login (a local MTA, the test sink) gets no auth fields at all.
    if smtp.username == '' then {} else {
      auth_username: smtp.username,
      auth_password_file: smtp.passwordFile,
    }
  ),

  alertmanagerConfig:: {
    templates: [am.templateFile],
    route: {
      receiver: 'wsmon-warning',
      group_by: am.groupBy,
      group_wait: am.groupWait,
      group_interval: am.groupInterval,
      repeat_interval: am.repeatInterval,
      routes: [
        { matchers: ['severity="critical"'], receiver: 'wsmon-critical' },
        { matchers: ['severity="warning"'], receiver: 'wsmon-warning' },
      ],
    },
    inhibit_rules: [
      {
        source_matchers: ['severity="critical"'],
        target_matchers: ['severity="warning"'],
        equal: ['indicator', 'instance'],
      },
    ] + [
      {
        source_matchers: ['severity="critical"', 'indicator=~"%s"' % alternatives(family)],
        target_matchers: ['severity="warning"', 'indicator=~"%s"' % alternatives(family)],
        equal: ['instance'],
      }
      for family in am.inhibitFamilies
    ],
    receivers: [
      { name: 'wsmon-warning', email_configs: [$.emailConfig(smtp.warningTo)] },
      { name: 'wsmon-critical', email_configs: [$.emailConfig(smtp.criticalTo)] },
    ],
  },

  alertmanagerTemplates:: {
    [am.templateFile]: importstr 'email.tmpl',
  },
}
