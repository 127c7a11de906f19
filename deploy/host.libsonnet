// The bundle for one host: Prometheus' config, Grafana's provisioning, the systemd units and
// wsmon's own settings file, every part on `deploy.host` at its port of `deploy.ports`.
function(c)
  local d = c.deploy;
  local common = (import 'common.libsonnet')(c);
  local address(part) = '%s:%d' % [d.host, d.ports[part]];
  local url(part) = 'http://' + address(part);
  // A systemd unit: sections in order, one Key=Value line per value (a list repeats the key).
  local unit(sections) = common.header + std.join('\n', [
    '[%s]\n' % s.name + std.join('', [
      '%s=%s\n' % [key, value]
      for key in std.objectFields(s.keys)
      for value in (if std.isArray(s.keys[key]) then s.keys[key] else [s.keys[key]])
    ])
    for s in sections
  ]);
  // Flags one per line, so a diff shows the one that changed.
  local exec(argv) = std.join(' \\\n    ', argv);
  local install = { name: 'Install', keys: { WantedBy: 'multi-user.target' } };
  // Tokens are checked unless the secret's path is empty (`make stack`, which says --no-auth);
  // then /metrics and the health endpoints are on a second address too, behind basic auth.
  local auth = if d.paths.wsmonJwtSecret == '' then null else d.paths.wsmonJwtSecret;
  // Beside prometheus.yml, which names it relative to itself.
  local passwordFile = 'wsmon.password';
  local scrapeUser = 'prometheus';
  local operations = if auth == null then null else {
    listen: address('wsmonMetrics'),
    webConfig: d.paths.wsmonWebConfig,
  };
  local metrics = if auth == null then null else {
    target: address('wsmonMetrics'),
    username: scrapeUser,
    passwordFile: passwordFile,
  };
  // The servers beside the one at ports.wsmon (`make stack --instances 2`): on the public port,
  // as a server without tokens serves /metrics.
  assert auth == null || d.wsmonPeerPorts == [] : 'deploy.wsmonPeerPorts: only without tokens';
  local wsmon = if d.wsmonPeerPorts == [] then null else [
    '%s:%d' % [d.host, port]
    for port in [d.ports.wsmon] + d.wsmonPeerPorts
  ];
  {
    'prometheus/prometheus.yml': common.prometheusConfig(address, metrics, wsmon),
    'grafana/provisioning/datasources/wsmon.yaml': common.datasources(url),
  } + (if auth == null then {} else {
    // Placeholders, so the bundle checks and loads as it is; until both are replaced, the
    // scrapes of wsmon are refused (401) and show as down.
    ['prometheus/' + passwordFile]: 'REPLACE-THIS-LINE-WITH-THE-PASSWORD-WHOSE-HASH-%s-HOLDS\n' % d.paths.wsmonWebConfig,
    'wsmon/web.yml': common.wsmonWebConfig(scrapeUser, '%s/%s' % [d.paths.prometheusConfig, passwordFile]),
  }) + {
    'grafana/provisioning/dashboards/wsmon.yaml': common.dashboardProvider(d.paths.grafanaDashboards),
    // The file the unit's --config names: only what an installed server changes from `wsmon
    // serve`'s defaults (every other key is listed by `wsmon serve --help`).
    'wsmon/wsmon.yaml': common.wsmonSettings(auth, operations),
    'systemd/wsmon.service': unit([
      {
        name: 'Unit',
        keys: {
          Description: 'wsmon WebSocket server (readiness: GET /readyz, liveness: GET /healthz)',
          After: 'network-online.target',
          Wants: 'network-online.target',
        },
      },
      {
        name: 'Service',
        keys: {
          ExecStart: exec([d.paths.wsmon + ' serve', '--config ' + d.paths.wsmonConfig]),
          // SIGTERM starts the drain; systemd must not SIGKILL before it ends: 5 s beyond it,
          // more than the 2 s the workers take to exit once it is over.
          KillSignal: 'SIGTERM',
          TimeoutStopSec: '%ds' % (d.drainSeconds + 5),
          // SIGHUP re-reads the thresholds file; a bad one keeps the set in use, and says why.
          ExecReload: '/bin/kill -HUP $MAINPID',
          Restart: 'on-failure',
          DynamicUser: 'yes',
        },
      },
      install,
    ]),
    'systemd/wsmon-prometheus.service': unit([
      {
        name: 'Unit',
        keys: { Description: 'Prometheus for wsmon (%s of history)' % d.retention, After: 'network-online.target' },
      },
      {
        name: 'Service',
        keys: {
          ExecStart: exec([d.paths.prometheus] + common.prometheusFlags(
            d.paths.prometheusConfig, d.paths.prometheusData, address('prometheus')
          )),
          // SIGHUP reloads prometheus.yml and the rules without losing the head block.
          ExecReload: '/bin/kill -HUP $MAINPID',
          User: 'prometheus',
          Restart: 'on-failure',
        },
      },
      install,
    ]),
    'systemd/wsmon-alertmanager.service': unit([
      {
        name: 'Unit',
        keys: { Description: 'Alertmanager for wsmon', After: 'network-online.target' },
      },
      {
        name: 'Service',
        keys: {
          ExecStart: exec([d.paths.alertmanager] + common.alertmanagerFlags(
            d.paths.alertmanagerConfig, d.paths.alertmanagerData, address('alertmanager')
          )),
          ExecReload: '/bin/kill -HUP $MAINPID',
          User: 'prometheus',
          Restart: 'on-failure',
        },
      },
      install,
    ]),
  }
