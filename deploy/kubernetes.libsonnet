// The bundle for Kubernetes with the Prometheus Operator and Grafana's sidecars: wsmon's
// Deployment and Service, the ServiceMonitor and PrometheusRule the operator turns into scrape
// config and rules, Alertmanager's config Secret, Grafana's datasources and one ConfigMap per
// dashboard, and the kustomization.yaml that applies them all (`kubectl apply -k`).
// `mixin` is the configured mixin; `dashboards` the dashboards build's output (name -> JSON).
function(mixin, dashboards)
  local c = mixin._config;
  local d = c.deploy;
  local k = d.kubernetes;
  local common = (import 'common.libsonnet')(c);
  // The operator names a target's job after its Service: the job the rules and dashboards select.
  local name = common.job(c.wsmonSelector);
  local port = 'http';
  // /metrics, /healthz, /readyz and /probe: the pod's second port (metrics_listen), which the
  // kubelet and Prometheus reach inside the cluster; only `http` needs to face clients.
  local metricsPort = 'metrics';
  local labels(component) = {
    'app.kubernetes.io/name': name,
    'app.kubernetes.io/component': component,
    'app.kubernetes.io/part-of': 'wsmon',
  };
  local metadata(objectName, component, more={}) = {
    name: objectName,
    namespace: k.namespace,
    labels: labels(component) + more,
  };
  local stem(file) = std.strReplace(file, '.json', '');
  local basename(path) = std.splitLimitR(path, '/', 1)[1];
  // Where the operator mounts every key of the Alertmanager's config Secret. It runs
  // Alertmanager on a copy of the config in another folder (config_out/), so the config names
  // the templates and the SMTP password file here by absolute path. The mixin re-renders the
  // config with them, as it would with any other override.
  local alertmanagerDir = '/etc/alertmanager/config';
  local prometheusAccount = name + '-prometheus';
  // What the bundle's Prometheus selects its ServiceMonitors and rules by.
  local partOf = { 'app.kubernetes.io/part-of': 'wsmon' };
  local authDir = '/etc/wsmon/auth';
  local alertmanagerConfig = (mixin + {
    _config+:: {
      alertmanager+: { templateFile: alertmanagerDir + '/' + c.alertmanager.templateFile },
      smtp+: { passwordFile: alertmanagerDir + '/' + basename(c.smtp.passwordFile) },
    },
  }).alertmanagerConfig;
  // A file inside a ConfigMap or Secret, as YAML text: the build writes it (deploy/build.py's
  // YAML_TEXT). Jsonnet's std.manifestYamlDoc took 3 of the bundle's 4.5 s: time.perf_counter
  // around alerting.evaluate of each manifest alone (the Secret 2.1 s, the datasources 1.1 s).
  local yamlText(document) = { '__yaml_text__': document };
  // The broker between the pods: the bundle's own Redis unless brokerUrl names another.
  local redisName = name + '-redis';
  local ownRedis = k.brokerUrl == '';
  local brokerUrl = if ownRedis then 'redis://%s:%d/0' % [redisName, d.ports.redis] else k.brokerUrl;
  local brokerDir = '/etc/wsmon/broker';
  local brokerPassword = k.brokerPasswordSecret != '';
  // The official image's redis user: numeric, for runAsNonRoot.
  local redisUid = 999;
  local manifests = {
    'deployment.yaml': {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: metadata(name, 'server'),
      spec: {
        // The workers of a pod relay chat, rooms and broadcasts through their supervisor, and
        // the pods through Redis (--broker): each delivery is published once per pod.
        replicas: k.replicas,
        selector: { matchLabels: labels('server') },
        // The new pod is ready before the old one drains: clients closed with 1001 reconnect
        // to it.
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
        template: {
          metadata: { labels: labels('server') },
          spec: {
            // Deletion removes the endpoint and starts preStop at once: the pod keeps serving for
            // preStopSeconds while kube-proxy stops sending it connections, then SIGTERM drains
            // for drainSeconds. The kubelet SIGKILLs at the grace period, counted from the
            // start of preStop: 5 s beyond both, more than the 2 s the workers take to exit.
            terminationGracePeriodSeconds: k.preStopSeconds + d.drainSeconds + 5,
            // The variables of a Service named wsmon (WSMON_PORT=tcp://…) are no settings.
            enableServiceLinks: false,
            // The replicas on different nodes where there are several: a node lost is then half
            // the clients, not all of them (on one node they are scheduled all the same).
            topologySpreadConstraints: [{
              maxSkew: 1,
              topologyKey: 'kubernetes.io/hostname',
              whenUnsatisfiable: 'ScheduleAnyway',
              labelSelector: { matchLabels: labels('server') },
            }],
            securityContext: {
              // Numeric, so the kubelet can check runAsNonRoot whatever user the image names.
              runAsUser: d.imageUid,
              runAsGroup: d.imageUid,
              runAsNonRoot: true,
              seccompProfile: { type: 'RuntimeDefault' },
            },
            volumes: [{ name: 'auth', secret: { secretName: k.authSecret } }] + (
              if brokerPassword then [{ name: 'broker', secret: { secretName: k.brokerPasswordSecret } }] else []
            ),
            containers: [{
              name: name,
              image: d.image,
              // The image's entrypoint is `wsmon` (the Dockerfile). Flags, not WSMON_*
              // variables: they win over anything the image or a ConfigMap sets.
              args: [
                'serve',
                '--host=0.0.0.0',
                '--port=%d' % d.ports.wsmon,
                '--workers=%d' % k.workers,
                '--drain-seconds=%d' % d.drainSeconds,
                '--auth-jwt-secret-file=%s/%s' % [authDir, k.authSecretKey],
                '--metrics-listen=0.0.0.0:%d' % d.ports.wsmonMetrics,
                '--broker=' + brokerUrl,
              ] + (if brokerPassword then ['--broker-password-file=%s/password' % brokerDir] else []),
              // Clients' JWTs are checked with the secret of the Secret k.authSecret (the README
              // creates it); without it the pod does not start, rather than accept everyone.
              volumeMounts: [{ name: 'auth', mountPath: authDir, readOnly: true }] + (
                if brokerPassword then [{ name: 'broker', mountPath: brokerDir, readOnly: true }] else []
              ),
              ports: [
                { name: port, containerPort: d.ports.wsmon, protocol: 'TCP' },
                { name: metricsPort, containerPort: d.ports.wsmonMetrics, protocol: 'TCP' },
              ],
              // 503 while draining or with every worker full: the Service stops sending the pod
              // new clients at once, and liveness (/healthz) does not restart a full pod.
              readinessProbe: {
                httpGet: { path: '/readyz', port: metricsPort },
                periodSeconds: 5,
                failureThreshold: 1,
              },
              livenessProbe: {
                httpGet: { path: '/healthz', port: metricsPort },
                periodSeconds: 10,
                timeoutSeconds: 3,
                failureThreshold: 3,
              },
              // The kubelet's own sleep (Kubernetes 1.30+): the image needs no sleep binary.
              lifecycle: { preStop: { sleep: { seconds: k.preStopSeconds } } },
              // No CPU limit: throttling would show as latency in the very p99 the alerts watch.
              resources: {
                requests: { cpu: std.toString(k.workers), memory: k.memoryRequest },
                limits: { memory: k.memoryLimit },
              },
              // The server writes no file: its processes talk over inherited socketpairs, which
              // have no path, so the root can be read-only with no volume for them.
              securityContext: {
                readOnlyRootFilesystem: true,
                allowPrivilegeEscalation: false,
                capabilities: { drop: ['ALL'] },
              },
            }],
          },
        },
      },
    },
    'service.yaml': {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: metadata(name, 'server'),
      spec: {
        selector: labels('server'),
        ports: [
          { name: port, port: d.ports.wsmon, targetPort: port, protocol: 'TCP' },
          { name: metricsPort, port: d.ports.wsmonMetrics, targetPort: metricsPort, protocol: 'TCP' },
        ],
      },
    },
    'servicemonitor.yaml': {
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'ServiceMonitor',
      metadata: metadata(name, 'server', k.operatorLabels),
      spec: {
        // No jobLabel: the job is the Service's name.
        selector: { matchLabels: labels('server') },
        endpoints: [{ port: metricsPort, path: '/metrics', interval: d.scrapeInterval }] + [
          {
            // The Testing tab's checks, as the one-host bundle's probe job runs them: the
            // scrape's own `up` under a job of its own (the module telling the three apart),
            // the probe's series under wsmon's job, which the rules and dashboards select.
            // The operator applies these after its own relabelings, which set the job.
            port: metricsPort,
            path: '/probe',
            params: { module: [module] },
            interval: d.scrapeInterval,
            // /probe is an admin surface: an admin token from the Secret k.probeTokenSecret.
            authorization: {
              type: 'Bearer',
              credentials: { name: k.probeTokenSecret, key: 'token' },
            },
            relabelings: [
              { targetLabel: 'job', replacement: d.probeJob },
              { targetLabel: 'module', replacement: module },
            ],
            metricRelabelings: [
              { targetLabel: 'job', replacement: name },
              { action: 'labeldrop', regex: 'module' },
            ],
          }
          for module in d.probeModules
        ],
      },
    },
    'prometheusrule.yaml': {
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'PrometheusRule',
      metadata: metadata(name, 'rules', k.operatorLabels),
      // rules.yaml's groups (main.jsonnet); the test holds them equal to the file.
      spec: { groups: mixin.prometheusRules.groups + mixin.prometheusAlerts.groups },
    },
    'alertmanager-secret.yaml': {
      apiVersion: 'v1',
      kind: 'Secret',
      // The name and key the operator's Alertmanager reads its config from; its other keys
      // are the templates, beside it in alertmanagerDir.
      metadata: metadata('alertmanager-' + k.alertmanagerName, 'alertmanager'),
      type: 'Opaque',
      // SMTP placeholders, as in alertmanager/alertmanager.yml: the README replaces the Secret.
      stringData: { 'alertmanager.yaml': yamlText(alertmanagerConfig) } + mixin.alertmanagerTemplates,
    },
    'grafana-datasources.yaml': {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      local sources = common.datasources(function(part) k[part + 'Url']),
      metadata: metadata('wsmon-grafana-datasources', 'grafana', k.datasourceLabel),
      data: {
        // Not the default: Grafana refuses a second default, and the cluster's may have one.
        'wsmon.yaml': yamlText(sources { datasources: [s { isDefault: false } for s in super.datasources] }),
      },
    },
    // The Prometheus and the Alertmanager of the bundle, which the operator runs: Prometheus
    // keeps the design card's 30 days, selects this bundle's ServiceMonitor and rules by their
    // part-of label, and sends to the Alertmanager, which reads alertmanager-<name>. With an
    // operator Prometheus of your own, leave these two (and its RBAC) out of the kustomization.
    'prometheus.yaml': {
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'Prometheus',
      metadata: metadata(name, 'prometheus'),
      spec: {
        retention: d.retention,
        scrapeInterval: d.scrapeInterval,
        evaluationInterval: d.scrapeInterval,
        serviceAccountName: prometheusAccount,
        serviceMonitorSelector: { matchLabels: partOf },
        ruleSelector: { matchLabels: partOf },
        alerting: {
          alertmanagers: [{ namespace: k.namespace, name: 'alertmanager-operated', port: 'web' }],
        },
        // 30 days of one instance's 174 series at 15 s take about 190 MB (README); room for
        // a pool of several instances.
        storage: {
          volumeClaimTemplate: {
            spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: k.prometheusStorage } } },
          },
        },
      },
    },
    'alertmanager.yaml': {
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'Alertmanager',
      metadata: metadata(k.alertmanagerName, 'alertmanager'),
      spec: { replicas: 1 },
    },
    // What Prometheus needs to find the targets of its ServiceMonitors, in this namespace only.
    'prometheus-serviceaccount.yaml': {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: metadata(prometheusAccount, 'prometheus'),
    },
    'prometheus-role.yaml': {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: metadata(prometheusAccount, 'prometheus'),
      rules: [
        { apiGroups: [''], resources: ['services', 'endpoints', 'pods'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
      ],
    },
    'prometheus-rolebinding.yaml': {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: metadata(prometheusAccount, 'prometheus'),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: prometheusAccount },
      subjects: [{ kind: 'ServiceAccount', name: prometheusAccount, namespace: k.namespace }],
    },
  } + (if !ownRedis then {} else {
    // The broker: one Redis pod of pub/sub only, which keeps nothing (no snapshot, no
    // append-only file), so a restarted pod is an empty one and nothing needs a volume. While
    // it restarts, each wsmon pod delivers to its own clients and counts the rest lost
    // (wsmon_broker_lost_total, /api/health says degraded); they resubscribe on its return. No password: the NetworkPolicy admits wsmon's pods only.
    'redis-deployment.yaml': {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: metadata(redisName, 'broker'),
      spec: {
        replicas: 1,
        selector: { matchLabels: labels('broker') },
        // Never two: pods subscribed to different Redis servers would not hear each other.
        strategy: { type: 'Recreate' },
        template: {
          metadata: { labels: labels('broker') },
          spec: {
            enableServiceLinks: false,
            automountServiceAccountToken: false,
            securityContext: {
              runAsUser: redisUid,
              runAsGroup: redisUid,
              runAsNonRoot: true,
              seccompProfile: { type: 'RuntimeDefault' },
            },
            // The image's working directory: Redis writes nothing there with no persistence,
            // but the root filesystem is read-only, so a small scratch volume all the same.
            volumes: [{ name: 'data', emptyDir: { sizeLimit: '16Mi' } }],
            containers: [{
              name: 'redis',
              image: k.redisImage,
              args: [
                'redis-server',
                '--port',
                std.toString(d.ports.redis),
                '--save',
                '',
                '--appendonly',
                'no',
                // Other pods connect without a password: the NetworkPolicy is the boundary.
                '--protected-mode',
                'no',
              ],
              ports: [{ name: 'redis', containerPort: d.ports.redis, protocol: 'TCP' }],
              readinessProbe: { tcpSocket: { port: 'redis' }, periodSeconds: 5 },
              livenessProbe: { tcpSocket: { port: 'redis' }, periodSeconds: 10, failureThreshold: 3 },
              volumeMounts: [{ name: 'data', mountPath: '/data' }],
              // Pub/sub holds no data: the memory is the subscribers' output buffers (32 MiB
              // each at most, Redis' default limit for pub/sub clients), one per wsmon pod.
              resources: {
                requests: { cpu: '100m', memory: '64Mi' },
                limits: { memory: k.redisMemoryLimit },
              },
              securityContext: {
                readOnlyRootFilesystem: true,
                allowPrivilegeEscalation: false,
                capabilities: { drop: ['ALL'] },
              },
            }],
          },
        },
      },
    },
    'redis-service.yaml': {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: metadata(redisName, 'broker'),
      spec: {
        selector: labels('broker'),
        ports: [{ name: 'redis', port: d.ports.redis, targetPort: 'redis', protocol: 'TCP' }],
      },
    },
    // Only wsmon's pods reach Redis (with a network plugin that enforces NetworkPolicy): any
    // other client could publish deliveries to every wsmon pod's clients.
    'redis-networkpolicy.yaml': {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: metadata(redisName, 'broker'),
      spec: {
        podSelector: { matchLabels: labels('broker') },
        policyTypes: ['Ingress'],
        ingress: [{
          from: [{ podSelector: { matchLabels: labels('server') } }],
          ports: [{ port: 'redis', protocol: 'TCP' }],
        }],
      },
    },
  }) + {
    ['dashboards/%s.yaml' % stem(file)]: {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: metadata(stem(file) + '-dashboard', 'grafana', k.dashboardLabel),
      // The sidecar writes each key as a file for Grafana: the JSON text of dashboards/generated/.
      data: { [file]: dashboards[file] },
    }
    for file in std.objectFields(dashboards)
  };
  // Paths relative to kustomization.yaml, which sits beside them.
  local kustomization = {
    apiVersion: 'kustomize.config.k8s.io/v1beta1',
    kind: 'Kustomization',
    namespace: k.namespace,
    resources: std.objectFields(manifests),
  };
  {
    ['kubernetes/' + path]: manifests[path]
    for path in std.objectFields(manifests)
  } + { 'kubernetes/kustomization.yaml': kustomization }
