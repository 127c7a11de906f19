"""The Kubernetes flavour of the bundle (deploy/kubernetes/), as checked in: the built-in kinds
valid in the API's own schemas, the Prometheus Operator's kinds holding what the operator reads,
and every part agreeing with the others, with the config and with the other flavours' files.

No cluster and no kubectl here: the schemas ship inside kubernetes_validate, so all but the last
test run in process (about 1 s in all); the last runs amtool, as test_deploy_tools does."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from bundle import DEPLOY, config
from support.stack import REPO, tool

from wsmon.catalogue import PROBE_MODULES
from wsmon.deploy import build
from wsmon.exporter.config import Settings
from wsmon.thresholds import DEFAULT_THRESHOLDS, load

KUBERNETES = DEPLOY / "kubernetes"
GENERATED_DASHBOARDS = REPO / "dashboards" / "generated"
# The oldest release the manifests are for: preStop's `sleep` action is on by default from 1.30
# (and in the schema, as an alpha field, a release before, which is why the floor is stated).
OLDEST = "1.30"
BUILT_IN = (
    "Deployment",
    "Service",
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "NetworkPolicy",
)
# The component label of the bundle's Redis (redis-*.yaml), apart from wsmon's own objects.
BROKER = "broker"
REDIS_FILES = ("redis-deployment.yaml", "redis-networkpolicy.yaml", "redis-service.yaml")
# Where the operator mounts the keys of the Alertmanager config Secret.
ALERTMANAGER_DIR = "/etc/alertmanager/config"
# A ConfigMap's data may not exceed 1 MiB; `kubectl apply` (client side) also copies the object
# into an annotation, and all of an object's annotations may not exceed 256 KiB.
CONFIGMAP_LIMIT = 1024 * 1024
ANNOTATIONS_LIMIT = 256 * 1024

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def c() -> dict[str, Any]:
    """The configured _config, evaluated once: each evaluation of the mixin costs 0.2 s."""
    return config()


@pytest.fixture(scope="module")
def manifests() -> dict[str, Manifest]:
    """Path relative to deploy/kubernetes/ -> the parsed manifest, kustomization.yaml apart."""
    return {
        path.relative_to(KUBERNETES).as_posix(): yaml.safe_load(path.read_text())
        for path in sorted(KUBERNETES.rglob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def component(manifest: Manifest) -> str:
    return str(manifest["metadata"]["labels"]["app.kubernetes.io/component"])


def one(manifests: dict[str, Manifest], kind: str, broker: bool = False) -> Manifest:
    """The one object of `kind`: wsmon's, or with `broker` the bundle's Redis'."""
    (found,) = [
        m for m in manifests.values() if m["kind"] == kind and (component(m) == BROKER) is broker
    ]
    return found


def container(manifests: dict[str, Manifest]) -> Manifest:
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    containers: list[Manifest] = pod["containers"]
    (wsmon,) = containers
    return wsmon


def test_the_kustomization_lists_exactly_the_manifests_all_in_the_namespace(
    manifests: dict[str, Manifest], c: dict[str, Any]
) -> None:
    k = c["deploy"]["kubernetes"]
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == k["namespace"]
    present = [p.relative_to(KUBERNETES).as_posix() for p in KUBERNETES.rglob("*") if p.is_file()]
    assert sorted([*kustomization["resources"], "kustomization.yaml"]) == sorted(present)
    for path, manifest in manifests.items():
        assert manifest["metadata"]["namespace"] == k["namespace"], path
        assert manifest["metadata"]["labels"]["app.kubernetes.io/part-of"] == "wsmon", path


@pytest.mark.parametrize("version", [OLDEST, kubernetes_validate.latest_version()])
def test_built_in_kinds_are_valid_in_the_strict_schemas(
    manifests: dict[str, Manifest], version: str
) -> None:
    kinds = set()
    for path, manifest in manifests.items():
        if manifest["kind"] in BUILT_IN:
            kubernetes_validate.validate(manifest, version, strict=True)
            kinds.add(manifest["kind"])
        else:
            assert manifest["apiVersion"] == "monitoring.coreos.com/v1", path
    assert kinds == set(BUILT_IN)


@pytest.mark.parametrize(
    ("where", "field", "misspelt"),
    [
        (("spec", "template", "spec", "containers", 0), "readinessProbe", "readinessprobe"),
        (("spec", "template", "spec"), "terminationGracePeriodSeconds", "terminationGracePeriod"),
    ],
)
def test_strict_validation_rejects_a_misspelt_field(
    manifests: dict[str, Manifest], where: tuple[str | int, ...], field: str, misspelt: str
) -> None:
    """What the test above proves: a field the API does not know fails it, not only a bad type."""
    broken = copy.deepcopy(one(manifests, "Deployment"))
    parent: Any = broken  # a dict or a list, as `where` goes down
    for key in where:
        parent = parent[key]
    parent[misspelt] = parent.pop(field)
    with pytest.raises(kubernetes_validate.ValidationError, match=misspelt):
        kubernetes_validate.validate(broken, OLDEST, strict=True)


def test_deployment_and_service_agree_on_the_port_and_the_probes(
    manifests: dict[str, Manifest], c: dict[str, Any]
) -> None:
    d = c["deploy"]
    deployment, service = one(manifests, "Deployment"), one(manifests, "Service")
    wsmon = container(manifests)
    assert wsmon["image"] == d["image"]
    assert wsmon["args"][0] == "serve"
    metrics = d["ports"]["wsmonMetrics"]
    assert {
        "--host=0.0.0.0",
        f"--port={d['ports']['wsmon']}",
        f"--metrics-listen=0.0.0.0:{metrics}",
    } <= set(wsmon["args"])
    ports = {p["name"]: p["containerPort"] for p in wsmon["ports"]}
    assert ports == {"http": d["ports"]["wsmon"], "metrics": metrics}
    for service_port in service["spec"]["ports"]:
        assert ports[service_port["targetPort"]] == service_port["port"]
    assert {p["port"] for p in service["spec"]["ports"]} == set(ports.values())
    # The health endpoints are on metrics_listen's port with the metrics.
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = wsmon[probe]["httpGet"]
        assert get["path"] == path
        assert ports[get["port"]] == metrics
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_the_grace_period_outlasts_pre_stop_and_the_drain(
    manifests: dict[str, Manifest], c: dict[str, Any]
) -> None:
    d = c["deploy"]
    drain = Settings().drain_seconds
    assert d["drainSeconds"] == drain, "config.libsonnet's drainSeconds is not wsmon's"
    wsmon = container(manifests)
    assert f"--drain-seconds={d['drainSeconds']}" in wsmon["args"]
    pre_stop = wsmon["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop == d["kubernetes"]["preStopSeconds"] > 0
    grace = one(manifests, "Deployment")["spec"]["template"]["spec"]
    # The workers take up to 2 s to exit once the drain is over (as for the systemd unit).
    assert grace["terminationGracePeriodSeconds"] > pre_stop + drain + 2


def test_the_pod_runs_unprivileged_on_a_read_only_root(
    manifests: dict[str, Manifest], c: dict[str, Any]
) -> None:
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    wsmon = container(manifests)
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The Dockerfile's USER (test_deploy_compose holds it to imageUid): not root.
    assert pod["securityContext"]["runAsUser"] == c["deploy"]["imageUid"] != 0
    assert wsmon["securityContext"]["readOnlyRootFilesystem"] is True
    assert wsmon["securityContext"]["allowPrivilegeEscalation"] is False
    assert wsmon["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # Service links would be WSMON_* variables of a Service named wsmon.
    assert pod["enableServiceLinks"] is False


def test_the_server_checks_tokens_with_the_secret_of_a_secret(
    manifests: dict[str, Manifest], c: dict[str, Any]
) -> None:
    """No --no-auth in a cluster: the JWT secret comes from a Secret the README creates, and
    without it the pod does not start."""
    k = c["deploy"]["kubernetes"]
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    wsmon = container(manifests)
    assert "--no-auth" not in wsmon["args"]
    (mount,) = wsmon["volumeMounts"]
    assert f"--auth-jwt-secret-file={mount['mountPath']}/{k['authSecretKey']}" in wsmon["args"]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"] == {"secretName": k["authSecret"]}
    workers = c["deploy"]["kubernetes"]["workers"]
    assert f"--workers={workers}" in wsmon["args"]
    assert wsmon["resources"]["requests"]["cpu"] == str(workers)


def test_the_service_monitor_scrapes_the_service_as_the_job_the_rules_select(
    manifests: dict[str, Manifest], c: dict[str, Any]
) -> None:
    k = c["deploy"]["kubernetes"]
    monitor, service = one(manifests, "ServiceMonitor"), one(manifests, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"].items() >= k["operatorLabels"].items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    endpoint, *probes = monitor["spec"]["endpoints"]
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == c["deploy"]["scrapeInterval"]
    # The operator names the job after the Service unless jobLabel or a relabeling says otherwise.
    assert "jobLabel" not in monitor["spec"]
    assert "relabelings" not in endpoint
    assert c["wsmonSelector"] == f'job="{service["metadata"]["name"]}"' == 'job="wsmon"'
    # The probes as the one-host bundle's probe job has them: /probe once per module, its own
    # job for the scrape, wsmon's job on the probe's series.
    assert [p["params"] for p in probes] == [{"module": [m]} for m in PROBE_MODULES]
    for probe, module in zip(probes, PROBE_MODULES, strict=True):
        assert probe["port"] == "metrics"
        assert probe["path"] == "/probe"
        assert probe["relabelings"] == [
            {"targetLabel": "job", "replacement": c["deploy"]["probeJob"]},
            {"targetLabel": "module", "replacement": module},
        ]
        assert {"targetLabel": "job", "replacement": "wsmon"} in probe["metricRelabelings"]
        # An admin token for /probe, from a Secret the README creates.
        assert probe["authorization"] == {
            "type": "Bearer",
            "credentials": {"name": c["deploy"]["kubernetes"]["probeTokenSecret"], "key": "token"},
        }


def test_the_prometheus_rule_holds_the_groups_of_rules_yaml(
    manifests: dict[str, Manifest], c: dict[str, Any]
) -> None:
    rule = one(manifests, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    labels = c["deploy"]["kubernetes"]["operatorLabels"]
    assert rule["metadata"]["labels"].items() >= labels.items()
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yaml").read_text())
    assert rule["spec"]["groups"] == rules["groups"]
    assert rules["groups"], "no rule groups"


def test_each_dashboard_is_a_configmap_of_its_very_bytes_for_grafana_s_sidecar(
    manifests: dict[str, Manifest], c: dict[str, Any]
) -> None:
    label = c["deploy"]["kubernetes"]["dashboardLabel"]
    expected = {p.name: p.read_bytes() for p in sorted(GENERATED_DASHBOARDS.glob("*.json"))}
    assert expected, "no generated dashboards"
    found = {}
    for path, manifest in manifests.items():
        if not path.startswith("dashboards/"):
            continue
        assert manifest["kind"] == "ConfigMap"
        assert manifest["metadata"]["labels"].items() >= label.items()
        ((name, text),) = manifest["data"].items()
        found[name] = text.encode()
        assert len(found[name]) < CONFIGMAP_LIMIT, name
        assert len((KUBERNETES / path).read_bytes()) < ANNOTATIONS_LIMIT, path
    assert found == expected


def test_grafana_s_datasources_have_the_dashboards_uid_and_the_operator_s_services(
    manifests: dict[str, Manifest], c: dict[str, Any]
) -> None:
    k = c["deploy"]["kubernetes"]
    (configmap,) = [m for p, m in manifests.items() if p == "grafana-datasources.yaml"]
    assert configmap["metadata"]["labels"].items() >= k["datasourceLabel"].items()
    ((_, text),) = configmap["data"].items()
    sources = {s["type"]: s for s in yaml.safe_load(text)["datasources"]}
    assert sources["prometheus"]["uid"] == c["datasource"]
    assert sources["prometheus"]["url"] == k["prometheusUrl"]
    assert sources["alertmanager"]["url"] == k["alertmanagerUrl"]
    assert not any(s["isDefault"] for s in sources.values())


def test_the_alertmanager_secret_is_the_bundle_s_config_where_the_operator_reads_it(
    manifests: dict[str, Manifest], c: dict[str, Any]
) -> None:
    """The config of deploy/alertmanager/, with its files (templates, SMTP password) found in the
    folder the operator mounts the Secret at: it runs Alertmanager on a copy in another folder,
    where a relative path would find nothing."""
    k = c["deploy"]["kubernetes"]
    secret = one(manifests, "Secret")
    assert secret["metadata"]["name"] == f"alertmanager-{k['alertmanagerName']}"
    data = secret["stringData"]
    expected = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    expected["templates"] = [f"{ALERTMANAGER_DIR}/{t}" for t in expected["templates"]]
    for receiver in expected["receivers"]:
        for email in receiver["email_configs"]:
            name = Path(email["auth_password_file"]).name
            email["auth_password_file"] = f"{ALERTMANAGER_DIR}/{name}"
    assert yaml.safe_load(data["alertmanager.yaml"]) == expected
    templates = sorted(p.name for p in (DEPLOY / "alertmanager").glob("*.tmpl"))
    assert sorted(data) == sorted(["alertmanager.yaml", *templates])
    for name in templates:
        assert data[name] == (DEPLOY / "alertmanager" / name).read_text()


@pytest.mark.integration
def test_amtool_checks_the_secret_s_config_with_its_files_where_the_operator_mounts_them(
    manifests: dict[str, Manifest], tmp_path: Path
) -> None:
    """The Secret's keys as files, as the operator mounts them, in tmp_path instead of
    /etc/alertmanager/config: amtool loads the template (and would fail a bad one)."""
    for name, text in one(manifests, "Secret")["stringData"].items():
        (tmp_path / name).write_text(text.replace(ALERTMANAGER_DIR, str(tmp_path)))
    (tmp_path / "smtp_password").write_text("a placeholder\n")
    result = subprocess.run(
        [tool("amtool"), "check-config", str(tmp_path / "alertmanager.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout


def test_the_bundles_prometheus_keeps_30_days_and_selects_the_bundle(
    manifests: dict[str, Manifest], c: dict[str, Any]
) -> None:
    """The operator's Prometheus and Alertmanager of the bundle, checked structurally (no CRD
    schemas here): 30 days, this bundle's ServiceMonitor and rules, the bundle's Alertmanager,
    which reads the Secret alertmanager-<name>; the RBAC names the account Prometheus runs as."""
    d, k = c["deploy"], c["deploy"]["kubernetes"]
    prometheus = one(manifests, "Prometheus")
    spec = prometheus["spec"]
    assert spec["retention"] == d["retention"] == "30d"
    for selector, kind in (
        ("serviceMonitorSelector", "ServiceMonitor"),
        ("ruleSelector", "PrometheusRule"),
    ):
        wanted = spec[selector]["matchLabels"].items()
        assert wanted <= one(manifests, kind)["metadata"]["labels"].items(), selector
    (alertmanager,) = spec["alerting"]["alertmanagers"]
    assert alertmanager == {
        "namespace": k["namespace"],
        "name": "alertmanager-operated",
        "port": "web",
    }
    assert one(manifests, "Alertmanager")["metadata"]["name"] == k["alertmanagerName"]
    assert one(manifests, "Secret")["metadata"]["name"] == f"alertmanager-{k['alertmanagerName']}"
    account = spec["serviceAccountName"]
    assert one(manifests, "ServiceAccount")["metadata"]["name"] == account
    binding = one(manifests, "RoleBinding")
    assert binding["roleRef"]["name"] == one(manifests, "Role")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": k["namespace"]}
    ]
    # The Grafana datasource's URL is the Service the operator makes for this Prometheus.
    assert k["prometheusUrl"].startswith("http://prometheus-operated:")


def test_the_pods_share_deliveries_through_the_bundle_s_redis(
    manifests: dict[str, Manifest], c: dict[str, Any]
) -> None:
    """Two replicas now that chat, rooms and broadcasts cross between pods: each with --broker
    to the Service of the bundle's Redis, which selects the Redis pod and nothing of wsmon's."""
    k, ports = c["deploy"]["kubernetes"], c["deploy"]["ports"]
    assert k["brokerUrl"] == ""
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == k["replicas"] == 2
    # Spread over the nodes, but scheduled on one node too.
    (spread,) = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    redis_service = one(manifests, "Service", broker=True)
    name = redis_service["metadata"]["name"]
    assert name == "wsmon-redis"
    (port,) = redis_service["spec"]["ports"]
    assert port["port"] == ports["redis"]
    assert f"--broker=redis://{name}:{port['port']}/0" in container(manifests)["args"]
    redis = one(manifests, "Deployment", broker=True)
    pod_labels = redis["spec"]["template"]["metadata"]["labels"]
    assert redis_service["spec"]["selector"].items() <= pod_labels.items()
    (server,) = redis["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert named[port["targetPort"]] == ports["redis"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert server[probe]["tcpSocket"]["port"] in named
    # Neither wsmon's Service nor its ServiceMonitor takes the Redis pod for a server.
    wsmon_selector = one(manifests, "Service")["spec"]["selector"].items()
    assert not wsmon_selector <= pod_labels.items()
    monitor = one(manifests, "ServiceMonitor")["spec"]["selector"]["matchLabels"].items()
    assert not monitor <= redis_service["metadata"]["labels"].items()
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert set(REDIS_FILES) <= set(kustomization["resources"])


def test_the_bundle_s_redis_is_one_pinned_unprivileged_pod_that_keeps_nothing(
    manifests: dict[str, Manifest], c: dict[str, Any]
) -> None:
    k = c["deploy"]["kubernetes"]
    redis = one(manifests, "Deployment", broker=True)
    # One: pods subscribed to two different Redis servers would not hear each other.
    assert redis["spec"]["replicas"] == 1
    assert redis["spec"]["strategy"] == {"type": "Recreate"}
    pod = redis["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert server["image"] == k["redisImage"] == c["deploy"]["compose"]["images"]["redis"]
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+-alpine", server["image"]), server["image"]
    # Pub/sub only: no snapshots, no append-only file; no volume claim.
    args = server["args"]
    assert args[0] == "redis-server"
    assert args[args.index("--save") + 1] == ""
    assert args[args.index("--appendonly") + 1] == "no"
    assert all("persistentVolumeClaim" not in volume for volume in pod["volumes"])
    # The Pod Security Standards' restricted profile, as for wsmon's pod.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert server["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert server["resources"]["limits"]["memory"] == k["redisMemoryLimit"]
    assert set(server["resources"]["requests"]) == {"cpu", "memory"}


def test_only_wsmon_s_pods_may_reach_redis(manifests: dict[str, Manifest]) -> None:
    """No password on the bundle's Redis: the NetworkPolicy admits wsmon's pods, on its port."""
    policy = one(manifests, "NetworkPolicy", broker=True)
    redis_pod = one(manifests, "Deployment", broker=True)["spec"]["template"]["metadata"]
    wsmon_pod = one(manifests, "Deployment")["spec"]["template"]["metadata"]
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= redis_pod["labels"].items()
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"].items() <= wsmon_pod["labels"].items()
    assert not source["podSelector"]["matchLabels"].items() <= redis_pod["labels"].items()
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]


def test_an_external_redis_leaves_the_bundle_s_own_out() -> None:
    """deploy.kubernetes.brokerUrl set: the pods use it, and no redis-*.yaml is written; its
    password comes from a Secret, by file, not in the URL."""
    url = "rediss://redis.example.com:6380/0"
    overrides = {
        "deploy": {"kubernetes": {"brokerUrl": url, "brokerPasswordSecret": "wsmon-redis"}}
    }
    files = build.render(load(DEFAULT_THRESHOLDS), overrides)
    assert not [path for path in files if path.startswith("kubernetes/redis-")]
    kustomization = yaml.safe_load(files["kubernetes/kustomization.yaml"])
    assert not set(REDIS_FILES) & set(kustomization["resources"])
    deployment = yaml.safe_load(files["kubernetes/deployment.yaml"])
    kubernetes_validate.validate(deployment, OLDEST, strict=True)
    pod = deployment["spec"]["template"]["spec"]
    (wsmon,) = pod["containers"]
    assert f"--broker={url}" in wsmon["args"]
    mounts = {m["name"]: m for m in wsmon["volumeMounts"]}
    password = f"--broker-password-file={mounts['broker']['mountPath']}/password"
    assert password in wsmon["args"]
    assert mounts["broker"]["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == "broker"]
    assert volume["secret"] == {"secretName": "wsmon-redis"}
