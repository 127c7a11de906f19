// The one config object of the wsmon alerting mixin: selectors, windows, links, routing and SMTP.
// Override any field with `(import 'mixin.libsonnet') + { _config+:: { ... } }`, or from Python
// with the `overrides` argument of main.jsonnet (deep-merged).
{
  _config+:: {
    // Every raw wsmon series the rules read; also names the scrape job of instance_down.
    wsmonSelector: 'job="wsmon"',
    // The rules keep these labels: one figure, and one alert, per scraped wsmon instance.
    instanceLabels: 'job, instance',
    // Window of every rate and average; it is part of the recording rule names (…_rate5m).
    rateWindow: '5m',
    // Set from alerting/indicators.py by main.jsonnet, so /api/health uses the same number.
    imbalanceMinConnectionsPerWorker: error 'imbalanceMinConnectionsPerWorker comes from indicators.py',
    slowConsumerMinCutoffs: error 'slowConsumerMinCutoffs comes from indicators.py',

    // Labels on every wsmon alert; wsmon:health:status counts only alerts that carry them.
    alertLabels: { service: 'wsmon' },

    // Links in every alert (`wsmon rules build --runbook-url/--dashboard-url` set them). By default
    // the runbook is the firing server's own /runbooks page, which renders runbooks.md; anchors
    // are the lower-cased alert names (## Name in Markdown).
    runbookBaseUrl: 'http://{{ $labels.instance }}/runbooks',
    dashboardBaseUrl: 'http://localhost:3000',
    datasource: 'prometheus',
    // Grafana dashboard uid per indicator: the dashboard of dashboards/ that shows it.
    dashboards: {
      message_error_rate: 'wsmon-messages',
      message_success_rate: 'wsmon-messages',
      client_error_ratio: 'wsmon-messages',
      average_latency: 'wsmon-performance',
      p99_latency: 'wsmon-performance',
      pool_utilization: 'wsmon-connections',
      connection_rejection_rate: 'wsmon-connections',
      worker_imbalance: 'wsmon-connections',
      slow_consumer_ratio: 'wsmon-connections',
      broadcast_time: 'wsmon-performance',
      probe_failure: 'wsmon-testing',
      instance_down: 'wsmon-overview',
      // The broker's row is on the Performance dashboard (its delay is part of the delivery
      // time of every recipient on another instance).
      broker_down: 'wsmon-performance',
      broker_loss_ratio: 'wsmon-performance',
      broker_delay: 'wsmon-performance',
    },
    // The dashboards (dashboards/), one per tab of the monitoring guide and in its order: every
    // dashboard's link bar, so the links act as the guide's tab bar. Testing comes with the
    // probes (a later issue); its link holds its place.
    dashboardTabs: [
      { title: 'Overview', uid: 'wsmon-overview' },
      { title: 'Connections', uid: 'wsmon-connections' },
      { title: 'Messages', uid: 'wsmon-messages' },
      { title: 'Performance', uid: 'wsmon-performance' },
      { title: 'Historical', uid: 'wsmon-historical' },
      { title: 'Alerts', uid: 'wsmon-health' },
      { title: 'Testing', uid: 'wsmon-testing' },
    ],
    // The job the dashboards' job variable starts on: the job of wsmonSelector.
    dashboardJob: 'wsmon',
    // Alertmanager's own series (Prometheus scrapes it too) for the Alerts dashboard, and where
    // its silences page is.
    alertmanagerSelector: 'job="alertmanager"',
    alertmanagerUrl: 'http://localhost:9093',

    alertmanager: {
      groupBy: ['alertname', 'instance'],
      groupWait: '30s',
      groupInterval: '5m',
      repeatInterval: '4h',
      templateFile: 'wsmon.tmpl',
      // Indicators that are one signal seen two ways: a critical alert on any of them silences
      // the warnings on all of them (twins on the same indicator are always inhibited). The
      // clients' figures (client_error_ratio, slow_consumer_ratio) are in no family: a service
      // critical says nothing about what clients do, so it must not hide their warnings.
      // The broker's figures are one link seen three ways: while WsmonBrokerDown pages, the
      // losses and the lag are that outage's, not news.
      inhibitFamilies: [
        ['message_error_rate', 'message_success_rate'],
        ['broker_down', 'broker_loss_ratio', 'broker_delay'],
      ],
    },

    // Placeholders: `wsmon alerts render-config` fills them from WSMON_SMTP_* at render time.
    // Alertmanager 0.25 does not expand environment variables in its config, and the password
    // is only ever referenced by file, never written here.
    smtp: {
      smarthost: 'smtp.example.com:587',
      from: 'wsmon-alerts@example.com',
      warningTo: 'oncall@example.com',
      criticalTo: 'oncall@example.com',
      username: 'wsmon-alerts@example.com',
      passwordFile: '/etc/alertmanager/smtp_password',
      requireTls: true,
    },

    // What only the deploy bundle (deploy/, `wsmon deploy build`) reads: where each part listens
    // and is installed. Every way the bundle starts Prometheus takes its retention from here.
    deploy: {
      // wsmonMetrics: the installed server's metrics_listen (/metrics and the health endpoints).
      ports: {
        wsmon: 8080,
        wsmonMetrics: 8081,
        prometheus: 9090,
        alertmanager: 9093,
        grafana: 3000,
        smtpSink: 1025,
        // The broker between wsmon servers (Compose's and Kubernetes' Redis; `make stack
        // --instances 2` starts its own on another port, beside the one Debian's package runs).
        redis: 6379,
      },
      // More wsmon servers on `host` for Prometheus to scrape beside the one at ports.wsmon, by
      // port, under the same job (the dashboards show them side by side): `make stack
      // --instances 2` sets it. Servers that share clients share a broker (wsmon serve --broker).
      wsmonPeerPorts: [],
      host: 'localhost',
      // The design card: Prometheus keeps 30 days of history.
      retention: '30d',
      scrapeInterval: '15s',
      // wsmon serve's default drain_seconds (exporter/config.py; a test holds them equal): the
      // systemd unit waits longer than that before it kills a draining server.
      drainSeconds: 10,
      // Prometheus' job that scrapes wsmon's /probe, once per module (wsmon.catalogue's
      // PROBE_MODULES; a test holds them equal).
      probeJob: 'wsmon-probe',
      probeModules: ['server', 'pool', 'echo'],
      // The image the Dockerfile at the top of the repository builds (Compose, Kubernetes), and
      // the numeric uid its USER runs as (a test holds the Dockerfile to it).
      image: 'wsmon:latest',
      imageUid: 10001,
      // docker-compose.yml's own settings (deploy/compose.libsonnet).
      compose: {
        // Pinned, so `up` runs what was checked: Prometheus and Alertmanager are the releases
        // whose promtool and amtool check this bundle (Debian's, as the systemd units run).
        images: {
          prometheus: 'prom/prometheus:v2.42.0',
          alertmanager: 'prom/alertmanager:v0.25.0',
          grafana: 'grafana/grafana:11.6.1',
          mailpit: 'axllent/mailpit:v1.21.8',
          // The release of Debian's redis-server, which the broker's tests run against.
          redis: 'redis:7.0.15-alpine',
        },
        // wsmon servers sharing deliveries through the Redis service: the first publishes the
        // port of ports.wsmon on the host, each next one the port after it.
        wsmonInstances: 2,
        // The host address every published port binds: loopback, since Prometheus, Alertmanager
        // and Mailpit have no login and Grafana starts as admin/admin. Widen it on purpose.
        publishAddress: '127.0.0.1',
        // The mail catcher Compose's Alertmanager sends to: it takes SMTP on one port and shows
        // what it caught in a web UI on the other.
        // SMTP on the bundle's smtpSink port (the one `make stack`'s sink takes too).
        mailpit: { web: 8025 },
      },
      // The Kubernetes manifests' own settings (deploy/kubernetes.libsonnet).
      kubernetes: {
        namespace: 'monitoring',
        // Worker processes of each pod, and the CPUs it requests: one each. Set, not counted:
        // a pod's CPU quota leaves every CPU of the node in its affinity mask.
        workers: 2,
        // Pods of the Deployment: chat, rooms and broadcasts cross between them through Redis.
        replicas: 2,
        // The broker every pod publishes to and subscribes to. Empty: the bundle's own Redis
        // (redis-*.yaml: one pod, no persistence, reachable from wsmon's pods only); a URL
        // (redis://host:6379/0, rediss:// for TLS) leaves it out for a Redis of your own.
        brokerUrl: '',
        // With a brokerUrl that needs a password: the Secret holding it (key `password`), read
        // by --broker-password-file rather than written into the URL and the pods' args.
        brokerPasswordSecret: '',
        // The bundle's Redis: Compose's pinned image, and what one pod of pub/sub needs.
        redisImage: 'redis:7.0.15-alpine',
        redisMemoryLimit: '256Mi',
        // 15.6 KiB per idle connection (README) times 10,000 per worker, plus the interpreters.
        memoryRequest: '512Mi',
        memoryLimit: '1Gi',
        // How long a terminating pod keeps serving, ready, while its endpoint leaves the Service.
        preStopSeconds: 5,
        // Labels the operator's Prometheus selects ServiceMonitors and PrometheusRules by (its
        // serviceMonitorSelector and ruleSelector; kube-prometheus-stack wants `release`).
        operatorLabels: {},
        // The operator's Alertmanager resource: it reads the Secret alertmanager-<name>.
        alertmanagerName: 'wsmon',
        // The Services the operator creates for its Prometheus and Alertmanager, for Grafana.
        prometheusUrl: 'http://prometheus-operated:9090',
        alertmanagerUrl: 'http://alertmanager-operated:9093',
        // What the grafana Helm chart's sidecars look for by default.
        dashboardLabel: { grafana_dashboard: '1' },
        datasourceLabel: { grafana_datasource: '1' },
        // The Secret holding the HS256 secret clients' JWTs are signed with (key authSecretKey),
        // and the one holding the admin token Prometheus' probes send (key `token`).
        authSecret: 'wsmon-auth',
        authSecretKey: 'jwt.secret',
        probeTokenSecret: 'wsmon-probe-token',
        // The persistent volume of the bundle's Prometheus (30 days; see its manifest).
        prometheusStorage: '10Gi',
      },
      paths: {
        wsmon: '/usr/local/bin/wsmon',
        wsmonConfig: '/etc/wsmon/wsmon.yaml',
        // Beside it: the thresholds /api/health judges by, the copy admins edit (`wsmon thresholds
        // --file`) and the server re-reads on SIGHUP (`systemctl reload wsmon`).
        wsmonThresholds: '/etc/wsmon/thresholds.yaml',
        // The HS256 secret clients' JWTs are signed with (empty: no tokens checked, --no-auth).
        wsmonJwtSecret: '/etc/wsmon/jwt.secret',
        // metrics_listen's TLS and basic auth, in Prometheus' web config format.
        wsmonWebConfig: '/etc/wsmon/web.yml',
        prometheus: '/usr/bin/prometheus',
        prometheusConfig: '/etc/prometheus/wsmon',
        prometheusData: '/var/lib/prometheus/wsmon',
        alertmanager: '/usr/bin/prometheus-alertmanager',
        alertmanagerConfig: '/etc/prometheus/wsmon/alertmanager',
        alertmanagerData: '/var/lib/prometheus/alertmanager-wsmon',
        grafanaDashboards: '/var/lib/grafana/dashboards/wsmon',
      },
    },
  },
}
