// docker-compose.yml and the files it mounts: every part in a container, reached by its service
// name at its port of `deploy.ports`; the one-host bundle's rules, template, dashboard provider
// and dashboards are mounted from deploy/, not copied. `configure(more)` is the mixin with more
// overrides (the mail catcher as Alertmanager's relay); `c` is the mixin's _config.
function(configure, c)
  local d = c.deploy;
  local compose = d.compose;
  local common = (import 'common.libsonnet')(c);
  // Service names are the parts' names, so a part's address inside Compose is name:port.
  local address(part) = '%s:%d' % [part, d.ports[part]];
  local url(part) = 'http://' + address(part);
  // Where each image keeps its config and data; /prometheus and /alertmanager are owned by the
  // images' own non-root user, so the named volumes mounted there are writable by it.
  local prometheusConfig = '/etc/prometheus';
  local prometheusData = '/prometheus';
  local alertmanagerConfig = '/etc/alertmanager';
  local alertmanagerData = '/alertmanager';
  local grafanaProvisioning = '/etc/grafana/provisioning';
  local template = c.alertmanager.templateFile;
  // Long syntax: a missing source fails `up`, where the short syntax would create an empty
  // directory in its place. `source` is relative to this folder (deploy/), as Compose reads it.
  local mount(source, target) = {
    type: 'bind',
    source: './' + source,
    target: target,
    read_only: true,
  };
  local volume(name, target) = { type: 'volume', source: name, target: target };
  // The same port on the host, on publishAddress only (loopback: see config.libsonnet).
  local publish(port) = '%s:%d:%d' % [compose.publishAddress, port, port];
  local listen(part) = ':%d' % d.ports[part];
  // wsmon's services: `wsmon`, then wsmon-2, ...; more than one share deliveries through the
  // `redis` service (wsmon serve --broker), each publishing the port after the one before it.
  local instances = compose.wsmonInstances;
  local brokered = instances > 1;
  local wsmonName(i) = if i == 0 then 'wsmon' else 'wsmon-%d' % (i + 1);
  local wsmonNames = [wsmonName(i) for i in std.range(0, instances - 1)];
  local broker = ['--broker', 'redis://redis:%d/0' % d.ports.redis];
  local wsmonService(i) = {
    build: { context: '..', dockerfile: 'Dockerfile' },
    image: d.image,
    // The one-host settings file: it listens on 0.0.0.0 at the port below.
    command: ['serve', '--config', d.paths.wsmonConfig, '--no-auth']
             + (if brokered then broker else []),
    // wsmon.yaml and the thresholds.yaml it names, where the settings file expects them.
    volumes: [
      mount('compose/wsmon/wsmon.yaml', d.paths.wsmonConfig),
      mount('wsmon/thresholds.yaml', d.paths.wsmonThresholds),
    ],
    ports: ['%s:%d:%d' % [compose.publishAddress, d.ports.wsmon + i, d.ports.wsmon]],
    // A broker that is not up yet costs deliveries between the servers, not the start: wsmon
    // retries it (and says so on /api/health), so no wait for Redis' health check.
    [if brokered then 'depends_on']: ['redis'],
    // SIGTERM starts the drain; as the systemd unit, wait 5 s beyond it before SIGKILL.
    stop_grace_period: '%ds' % (d.drainSeconds + 5),
    // The image's check probes the image's default port; this one the configured port.
    healthcheck: {
      test: [
        'CMD',
        'python',
        '-c',
        "import urllib.request; urllib.request.urlopen('http://127.0.0.1:%d/healthz', timeout=3)"
        % d.ports.wsmon,
      ],
      interval: '10s',
      timeout: '5s',
      retries: 3,
    },
    restart: 'unless-stopped',
  };
  {
    'compose/prometheus/prometheus.yml': common.prometheusConfig(
      address, null, ['%s:%d' % [name, d.ports.wsmon] for name in wsmonNames]
    ),
    // A trial on loopback-published ports: no tokens (the server runs with --no-auth and says
    // so in its log every minute). For more, give it the one-host file's auth_jwt_secret_file.
    'compose/wsmon/wsmon.yaml': common.wsmonSettings(null),
    'compose/grafana/datasources/wsmon.yaml': common.datasources(url),
    // The mixin's Alertmanager config sending to the mail catcher: no TLS and no login there, so
    // no auth fields (an empty username leaves them out).
    'compose/alertmanager/alertmanager.yml': configure({
      smtp: {
        smarthost: 'mailpit:%d' % d.ports.smtpSink,
        requireTls: false,
        username: '',
      },
    }).alertmanagerConfig,
    'docker-compose.yml': {
      // The project name, so the volumes are wsmon_prometheus-data etc., not after the folder.
      name: 'wsmon',
      services: {
        [wsmonName(i)]: wsmonService(i)
        for i in std.range(0, instances - 1)
      } + (if !brokered then {} else {
        redis: {
          image: compose.images.redis,
          // Pub/sub only: nothing to keep, so nothing written (no snapshot, no append-only
          // file). Reached by the wsmon services inside the Compose network and published on
          // no host port; protected mode (which refuses other hosts without a password) is off
          // on purpose, as the image has it.
          command: [
            'redis-server',
            '--port',
            std.toString(d.ports.redis),
            '--save',
            '',
            '--appendonly',
            'no',
            '--protected-mode',
            'no',
          ],
          healthcheck: {
            test: ['CMD', 'redis-cli', '-p', std.toString(d.ports.redis), 'ping'],
            interval: '10s',
            timeout: '5s',
            retries: 3,
          },
          restart: 'unless-stopped',
        },
      }) + {
        prometheus: {
          image: compose.images.prometheus,
          // The systemd unit's flags (the 30-day retention), with the image's paths.
          command: common.prometheusFlags(prometheusConfig, prometheusData, listen('prometheus')),
          volumes: [
            mount('compose/prometheus/prometheus.yml', prometheusConfig + '/prometheus.yml'),
            // Beside prometheus.yml, where its relative rule_files looks.
            mount('prometheus/rules.yaml', prometheusConfig + '/rules.yaml'),
            volume('prometheus-data', prometheusData),
          ],
          ports: [publish(d.ports.prometheus)],
          depends_on: wsmonNames + ['alertmanager'],
          restart: 'unless-stopped',
        },
        alertmanager: {
          image: compose.images.alertmanager,
          command: common.alertmanagerFlags(alertmanagerConfig, alertmanagerData, listen('alertmanager')),
          volumes: [
            mount('compose/alertmanager/alertmanager.yml', alertmanagerConfig + '/alertmanager.yml'),
            // Its `templates:` are relative to alertmanager.yml: the template goes beside it.
            mount('alertmanager/' + template, '%s/%s' % [alertmanagerConfig, template]),
            // Silences and the notification log outlive a restart.
            volume('alertmanager-data', alertmanagerData),
          ],
          ports: [publish(d.ports.alertmanager)],
          depends_on: ['mailpit'],
          restart: 'unless-stopped',
        },
        grafana: {
          image: compose.images.grafana,
          environment: { GF_SERVER_HTTP_PORT: std.toString(d.ports.grafana) },
          volumes: [
            mount('compose/grafana/datasources/wsmon.yaml', grafanaProvisioning + '/datasources/wsmon.yaml'),
            mount('grafana/provisioning/dashboards/wsmon.yaml', grafanaProvisioning + '/dashboards/wsmon.yaml'),
            // Where the provider looks, as on one host.
            mount('grafana/dashboards', d.paths.grafanaDashboards),
          ],
          ports: [publish(d.ports.grafana)],
          depends_on: ['prometheus', 'alertmanager'],
          restart: 'unless-stopped',
        },
        mailpit: {
          image: compose.images.mailpit,
          environment: {
            MP_SMTP_BIND_ADDR: '0.0.0.0:%d' % d.ports.smtpSink,
            MP_UI_BIND_ADDR: '0.0.0.0:%d' % compose.mailpit.web,
          },
          // Only the UI is published: Alertmanager reaches SMTP inside the Compose network.
          ports: [publish(compose.mailpit.web)],
          restart: 'unless-stopped',
        },
      },
      volumes: { 'prometheus-data': {}, 'alertmanager-data': {} },
    },
  }
