"""deploy/docker-compose.yml, the files it mounts and the Dockerfile it builds, checked without
Docker: the Compose Specification's schema, mounts that exist, and ports, flags and configs that
agree with the rest of the bundle. promtool and amtool check the Compose configs, and a wheel is
built and installed from a copy of the Docker build context (integration)."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml
from bundle import DEPLOY, config, exec_start, unit
from support.polling import wait_until
from support.processes import HOST, free_port
from support.stack import REPO, Stack, tool

COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
# The Compose Specification as check-jsonschema vendors it (`--builtin-schema vendor.compose-spec`),
# validated in this process: the CLI would cost a process and the integration marker.
# Found without importing the package: its __init__ loads its CLI, which needs a newer click than
# the oldest wsmon allows (make test-oldest).
_PACKAGE = importlib.util.find_spec("check_jsonschema")
if _PACKAGE is None or _PACKAGE.origin is None:
    raise ImportError("check-jsonschema is not installed (the dev extra brings it)")
SCHEMA = Path(_PACKAGE.origin).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
# Where Compose's Prometheus and Alertmanager read their configs (the images' own paths).
PROMETHEUS_CONFIG = PurePosixPath("/etc/prometheus/prometheus.yml")
ALERTMANAGER_CONFIG = PurePosixPath("/etc/alertmanager/alertmanager.yml")
# The wsmon services, sharing deliveries through the redis service.
SERVERS = ("wsmon", "wsmon-2")
# Fields of an Alertmanager email_config that say how to reach the relay, not what to send.
SMTP_FIELDS = ("smarthost", "require_tls", "auth_username", "auth_password", "auth_password_file")


@pytest.fixture(scope="module")
def c() -> dict[str, Any]:
    return config()


@cache
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def service(name: str) -> dict[str, Any]:
    result: dict[str, Any] = compose()["services"][name]
    return result


def mounts(name: str) -> dict[str, str]:
    """Container path -> source of a service's volumes (a path under deploy/, or a volume name)."""
    return {volume["target"]: volume["source"] for volume in service(name).get("volumes", [])}


def flags(argv: list[str]) -> dict[str, str]:
    """--name=value flags by name, in order."""
    return dict(arg.partition("=")[::2] for arg in argv if arg.startswith("--"))


def yaml_file(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# -- the Dockerfile and its context ----------------------------------------------------------------


@cache
def instructions() -> tuple[tuple[str, str], ...]:
    """(INSTRUCTION, arguments) of the Dockerfile, in order; comments dropped and continuation
    lines joined, as Docker reads them."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.startswith("#")]
    parsed = []
    for line in "\n".join(lines).replace("\\\n", " ").splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            parsed.append((word.upper(), rest.strip()))
    return tuple(parsed)


def one(instruction: str) -> str:
    """The arguments of the image's (the last stage's) one `instruction`."""
    last_from = max(i for i, (word, _) in enumerate(instructions()) if word == "FROM")
    (arguments,) = [rest for word, rest in instructions()[last_from:] if word == instruction]
    return arguments


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context (not from another stage)."""
    result = []
    for word, rest in instructions():
        args = shlex.split(rest)
        if word == "COPY" and not any(arg.startswith("--from=") for arg in args):
            result.append((args[:-1], args[-1]))
    return result


def exec_form(arguments: str) -> list[str]:
    argv: list[str] = json.loads(arguments)
    return argv


def healthcheck_argv() -> list[str]:
    """The HEALTHCHECK's command (after its options and CMD)."""
    _, _, command = one("HEALTHCHECK").partition(" CMD ")
    return exec_form(command)


@cache
def ignored_patterns() -> tuple[re.Pattern[str], ...]:
    """.dockerignore's patterns as Docker matches them (moby/patternmatcher): anchored at the top
    of the context, `**` any number of folders, `*`, `?` and `[...]` within one name."""
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        # Re-inclusion changes the semantics to "last match wins": not handled, so not allowed.
        assert not pattern.startswith("!"), f"{pattern}: this matcher has no `!`"
        regex = ""
        for token in re.split(r"(\*\*/|\*\*|\*|\?|\[[^]]*\])", pattern.strip("/")):
            if token == "**/":
                regex += "(.*/)?"
            elif token == "**":
                regex += ".*"
            elif token == "*":
                regex += "[^/]*"
            elif token == "?":
                regex += "[^/]"
            elif token.startswith("["):
                regex += token
            else:
                regex += re.escape(token)
        patterns.append(re.compile(regex))
    return tuple(patterns)


def ignored(path: str) -> bool:
    """Whether the context leaves `path` (relative to the top) out: it, or a folder above it,
    matches a pattern."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(p.fullmatch(prefix) for p in ignored_patterns() for prefix in prefixes)


def copy_context(destination: Path) -> None:
    """What the Dockerfile's COPY lines put in its WORKDIR: each source where the checkout has
    it, without what .dockerignore leaves out, symlinks kept as symlinks (as COPY does)."""
    for sources, _ in copies():
        for source in sources:
            top = REPO / source.rstrip("/")
            if top.is_file():
                shutil.copy2(top, destination / top.name)
                continue
            for folder, subfolders, names in os.walk(top):
                here = Path(folder)
                relative = here.relative_to(REPO)
                subfolders[:] = [s for s in subfolders if not ignored(f"{relative}/{s}")]
                (destination / relative).mkdir(parents=True, exist_ok=True)
                for name in [*names, *(s for s in subfolders if (here / s).is_symlink())]:
                    if ignored(f"{relative}/{name}"):
                        continue
                    if (here / name).is_symlink():
                        (destination / relative / name).symlink_to(os.readlink(here / name))
                    else:
                        shutil.copy2(here / name, destination / relative / name)


# -- the Compose file ------------------------------------------------------------------------------


def validate(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    return [error.message for error in validator.iter_errors(document)]


def test_the_compose_file_follows_the_compose_specification() -> None:
    assert validate(compose()) == []
    # `version:` is obsolete in the Compose Specification (Compose v2 warns about it).
    assert "version" not in compose()
    assert set(compose()["services"]) == {
        *SERVERS,
        "redis",
        "prometheus",
        "alertmanager",
        "grafana",
        "mailpit",
    }


def test_the_schema_rejects_a_misspelt_service_key() -> None:
    """The check is meaningful: a key the specification does not know fails it."""
    misspelt = copy.deepcopy(compose())
    wsmon = misspelt["services"]["wsmon"]
    wsmon["stop_grace_periode"] = wsmon.pop("stop_grace_period")
    errors = validate(misspelt)
    assert len(errors) == 1
    assert "'stop_grace_periode' was unexpected" in errors[0]


def test_every_mount_source_is_in_the_bundle_and_every_volume_is_declared() -> None:
    declared = set(compose()["volumes"])
    used = set()
    for name, spec in compose()["services"].items():
        for volume in spec.get("volumes", []):
            if volume["type"] == "volume":
                used.add(volume["source"])
                continue
            assert volume["type"] == "bind"
            assert volume["read_only"] is True, f"{name}: the bundle's files are read-only"
            source = DEPLOY / volume["source"]
            assert volume["source"].startswith("./"), "relative to deploy/, as Compose reads it"
            target = PurePosixPath(volume["target"])
            # A file goes where the program looks for that very name (rules.yaml beside
            # prometheus.yml, wsmon.tmpl beside alertmanager.yml); a folder has no suffix.
            if target.suffix:
                assert source.is_file(), f"{name}: {source} is not a file"
                assert source.name == target.name
            else:
                assert source.is_dir(), f"{name}: {source} is not a folder"
    assert used == declared == {"prometheus-data", "alertmanager-data"}
    build = service("wsmon")["build"]
    assert (DEPLOY / build["context"]).resolve() == REPO
    assert (REPO / build["dockerfile"]) == DOCKERFILE


def test_ports_are_the_configured_ones_and_published_on_loopback_only(c: dict[str, Any]) -> None:
    d = c["deploy"]
    ports = d["ports"]
    published = {name: spec.get("ports", []) for name, spec in compose()["services"].items()}
    web = d["compose"]["mailpit"]["web"]
    assert d["compose"]["publishAddress"] == "127.0.0.1"
    # Redis is reached inside the Compose network only; wsmon-2 on the host port after wsmon's.
    assert published == {
        "wsmon": [f"127.0.0.1:{ports['wsmon']}:{ports['wsmon']}"],
        "wsmon-2": [f"127.0.0.1:{ports['wsmon'] + 1}:{ports['wsmon']}"],
        "redis": [],
        "prometheus": [f"127.0.0.1:{ports['prometheus']}:{ports['prometheus']}"],
        "alertmanager": [f"127.0.0.1:{ports['alertmanager']}:{ports['alertmanager']}"],
        "grafana": [f"127.0.0.1:{ports['grafana']}:{ports['grafana']}"],
        "mailpit": [f"127.0.0.1:{web}:{web}"],
    }
    # Each container listens where it is published and where the others reach it.
    wsmon_settings = yaml_file(DEPLOY / "compose" / "wsmon" / "wsmon.yaml")
    assert wsmon_settings["host"] == "0.0.0.0"
    assert wsmon_settings["port"] == ports["wsmon"]
    for part in ("prometheus", "alertmanager"):
        listen = flags(service(part)["command"])["--web.listen-address"]
        assert listen == f":{ports[part]}"
    assert service("grafana")["environment"]["GF_SERVER_HTTP_PORT"] == str(ports["grafana"])
    assert service("mailpit")["environment"] == {
        "MP_SMTP_BIND_ADDR": f"0.0.0.0:{d['ports']['smtpSink']}",
        "MP_UI_BIND_ADDR": f"0.0.0.0:{web}",
    }
    # The image's own port: EXPOSE, the default command and its health check.
    assert one("EXPOSE") == str(ports["wsmon"])
    cmd = exec_form(one("CMD"))
    assert cmd[cmd.index("--port") + 1] == str(ports["wsmon"])
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    for check in (healthcheck_argv(), service("wsmon")["healthcheck"]["test"][1:]):
        assert f"http://127.0.0.1:{ports['wsmon']}/healthz" in check[-1]
    # The dashboards' and the alerts' links from a browser on the host reach the published ports.
    assert c["dashboardBaseUrl"] == f"http://localhost:{ports['grafana']}"
    assert c["alertmanagerUrl"] == f"http://localhost:{ports['alertmanager']}"


def test_images_are_pinned(c: dict[str, Any]) -> None:
    images = c["deploy"]["compose"]["images"]
    for name in ("prometheus", "alertmanager", "grafana", "mailpit", "redis"):
        image = service(name)["image"]
        assert image == images[name]
        _, _, tag = image.rpartition(":")
        # A release, and for Redis the image's Alpine variant of it.
        assert re.fullmatch(r"v?\d+\.\d+\.\d+(-alpine)?", tag), f"{image}: not a release tag"
    for server in SERVERS:
        assert service(server)["image"] == c["deploy"]["image"]
    # The Kubernetes bundle's Redis is the same release.
    assert c["deploy"]["kubernetes"]["redisImage"] == images["redis"]


def test_wsmon_runs_with_the_bundle_settings_and_outlasts_the_drain(c: dict[str, Any]) -> None:
    d = c["deploy"]
    wsmon = service("wsmon")
    # A trial on loopback: no tokens checked, which the server's log says every minute. Its
    # settings are the one-host file's but for the JWT secret and the metrics address (Compose's
    # Prometheus scrapes the one port, with no password). Both servers alike, with the broker.
    broker = f"redis://redis:{d['ports']['redis']}/0"
    for server in SERVERS:
        assert service(server)["command"] == [
            *("serve", "--config", d["paths"]["wsmonConfig"], "--no-auth"),
            *("--broker", broker),
        ]
        assert service(server)["depends_on"] == ["redis"]
        assert mounts(server) == {
            d["paths"]["wsmonConfig"]: "./compose/wsmon/wsmon.yaml",
            d["paths"]["wsmonThresholds"]: "./wsmon/thresholds.yaml",
        }
        # The same service but for its name and its port on the host.
        same = {key: value for key, value in service(server).items() if key != "ports"}
        assert same == {key: value for key, value in wsmon.items() if key != "ports"}
    one_host = yaml_file(DEPLOY / "wsmon" / "wsmon.yaml")
    assert yaml_file(DEPLOY / "compose" / "wsmon" / "wsmon.yaml") == {
        key: value
        for key, value in one_host.items()
        if key not in ("auth_jwt_secret_file", "metrics_listen", "metrics_web_config_file")
    }
    # Docker's SIGKILL comes as late as systemd's, after the drain and the workers' exit.
    grace = wsmon["stop_grace_period"]
    timeout = unit(DEPLOY / "systemd" / "wsmon.service")["Service"]["TimeoutStopSec"]
    assert grace == timeout
    assert float(grace.removesuffix("s")) > d["drainSeconds"] + 2
    # CMD, not CMD-SHELL: the check's Python source reaches python unquoted by a shell.
    assert wsmon["healthcheck"]["test"][0] == "CMD"
    assert one("STOPSIGNAL") == "SIGTERM"
    assert exec_form(one("ENTRYPOINT")) == ["wsmon"]
    # The uid the Kubernetes manifests' runAsUser names: the image's own, not root.
    assert one("USER") == f"{d['imageUid']}:{d['imageUid']}"
    assert d["imageUid"] != 0


def test_prometheus_has_the_units_flags_and_keeps_its_data_in_the_volume(c: dict[str, Any]) -> None:
    d = c["deploy"]
    command = service("prometheus")["command"]
    assert f"--storage.tsdb.retention.time={d['retention']}" in command
    assert d["retention"] == "30d"
    # The systemd unit's flags, in its order; only where the files are and where it listens differ.
    systemd = flags(exec_start(DEPLOY / "systemd" / "wsmon-prometheus.service")[1:])
    compose_flags = flags(command)
    assert len(compose_flags) == len(command), "every argument is a --flag=value"
    assert list(compose_flags) == list(systemd)
    replaced = ("--config.file", "--storage.tsdb.path", "--web.listen-address")
    assert {k: v for k, v in compose_flags.items() if k not in replaced} == {
        k: v for k, v in systemd.items() if k not in replaced
    }
    config_file = PurePosixPath(compose_flags["--config.file"])
    assert config_file == PROMETHEUS_CONFIG
    assert mounts("prometheus") == {
        str(config_file): "./compose/prometheus/prometheus.yml",
        str(config_file.with_name("rules.yaml")): "./prometheus/rules.yaml",
        compose_flags["--storage.tsdb.path"]: "prometheus-data",
    }


def test_compose_prometheus_reaches_the_parts_by_service_name(c: dict[str, Any]) -> None:
    ports = c["deploy"]["ports"]
    prometheus = yaml_file(DEPLOY / "compose" / "prometheus" / "prometheus.yml")
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in prometheus["scrape_configs"]
    }
    # Both servers under job wsmon (the dashboards show them side by side), and each probed.
    servers = [f"{server}:{ports['wsmon']}" for server in SERVERS]
    assert jobs == {
        "wsmon": servers,
        "alertmanager": [f"alertmanager:{ports['alertmanager']}"],
        "prometheus": [f"prometheus:{ports['prometheus']}"],
        c["deploy"]["probeJob"]: servers,
    }
    assert service("prometheus")["depends_on"] == [*SERVERS, "alertmanager"]
    (alertmanagers,) = prometheus["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"] == [
        {"targets": [f"alertmanager:{ports['alertmanager']}"]}
    ]
    # Apart from the targets, the one-host prometheus.yml: the same rules, intervals and jobs, but
    # wsmon scraped on its one port with no password (the trial's server checks none).
    host = yaml_file(DEPLOY / "prometheus" / "prometheus.yml")
    metrics = f"{c['deploy']['host']}:{ports['wsmonMetrics']}"
    for job in host["scrape_configs"]:
        if job.pop("basic_auth", None) is not None:
            for group in job["static_configs"]:
                assert group["targets"] == [metrics]
                group["targets"] = servers
    assert ports_only(prometheus) == ports_only(host)


def ports_only(prometheus: dict[str, Any]) -> dict[str, Any]:
    """prometheus.yml with every host:port target cut to its port."""
    result = copy.deepcopy(prometheus)
    for job in [*result["scrape_configs"], *result["alerting"]["alertmanagers"]]:
        for static in job["static_configs"]:
            static["targets"] = [target.rpartition(":")[2] for target in static["targets"]]
    return result


def test_compose_grafana_has_the_dashboards_uid_and_the_services_urls(c: dict[str, Any]) -> None:
    ports = c["deploy"]["ports"]
    sources = yaml_file(DEPLOY / "compose" / "grafana" / "datasources" / "wsmon.yaml")
    by_type = {source["type"]: source for source in sources["datasources"]}
    assert by_type["prometheus"]["uid"] == c["datasource"]
    assert by_type["prometheus"]["url"] == f"http://prometheus:{ports['prometheus']}"
    assert by_type["alertmanager"]["url"] == f"http://alertmanager:{ports['alertmanager']}"
    # Apart from the URLs, the one-host provisioning.
    host = yaml_file(DEPLOY / "grafana" / "provisioning" / "datasources" / "wsmon.yaml")
    for document in (sources, host):
        for source in document["datasources"]:
            del source["url"]
    assert sources == host
    provider = yaml_file(DEPLOY / "grafana" / "provisioning" / "dashboards" / "wsmon.yaml")
    dashboards = provider["providers"][0]["options"]["path"]
    assert dashboards == c["deploy"]["paths"]["grafanaDashboards"]
    assert mounts("grafana") == {
        "/etc/grafana/provisioning/datasources/wsmon.yaml": (
            "./compose/grafana/datasources/wsmon.yaml"
        ),
        "/etc/grafana/provisioning/dashboards/wsmon.yaml": (
            "./grafana/provisioning/dashboards/wsmon.yaml"
        ),
        dashboards: "./grafana/dashboards",
    }


def without_smtp(alertmanager: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(alertmanager)
    for receiver in result["receivers"]:
        for email in receiver["email_configs"]:
            for field in SMTP_FIELDS:
                email.pop(field, None)
    return result


def test_compose_alertmanager_mails_the_catcher_and_otherwise_is_the_bundles(
    c: dict[str, Any],
) -> None:
    smtp_port = c["deploy"]["ports"]["smtpSink"]
    compose_config = yaml_file(DEPLOY / "compose" / "alertmanager" / "alertmanager.yml")
    host_config = yaml_file(DEPLOY / "alertmanager" / "alertmanager.yml")
    emails = [e for r in compose_config["receivers"] for e in r["email_configs"]]
    assert len(emails) == 2
    for email in emails:
        assert email["smarthost"] == f"mailpit:{smtp_port}"
        assert email["require_tls"] is False
        # The catcher takes mail without a login: no auth fields, not empty ones.
        assert not [field for field in email if field.startswith("auth_")]
    assert without_smtp(compose_config) == without_smtp(host_config)
    # Its template is mounted beside it, where the relative `templates:` entry resolves.
    command = flags(service("alertmanager")["command"])
    config_file = PurePosixPath(command["--config.file"])
    assert config_file == ALERTMANAGER_CONFIG
    (template,) = compose_config["templates"]
    assert mounts("alertmanager") == {
        str(config_file): "./compose/alertmanager/alertmanager.yml",
        str(config_file.parent / template): f"./alertmanager/{template}",
        command["--storage.path"]: "alertmanager-data",
    }


def test_the_dockerfile_copies_the_package_sources_and_the_context_keeps_them() -> None:
    copied = []
    for sources, destination in copies():
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            assert not ignored(source.rstrip("/")), f"COPY {source}: .dockerignore leaves it out"
            # A folder lands where it is in the checkout, so wsmon/'s relative symlinks resolve.
            assert destination in ("./", source), f"COPY {source} {destination}"
            copied.append(source.rstrip("/"))
    links = [path for path in (REPO / "wsmon").iterdir() if path.is_symlink()]
    assert links, "wsmon/ has no symlinks to the top-level folders"
    for link in links:
        target = (link.parent / os.readlink(link)).resolve()
        assert str(target.relative_to(REPO)) in copied, f"{link} points at {target}, not copied"
    assert {"pyproject.toml", "README.md", "LICENSE", "wsmon"} <= set(copied)
    # And it keeps out what it is for.
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "build/lib/x.py"):
        assert ignored(path), path
    assert ignored("deploy/__pycache__/build.cpython-311.pyc")
    assert not ignored("deploy/build.py")


# -- the real tools --------------------------------------------------------------------------------


def run(*argv: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in argv], capture_output=True, text=True, timeout=60, check=False, env=env
    )


@pytest.mark.integration
def test_promtool_checks_the_compose_prometheus_config_with_the_rules_beside_it(
    tmp_path: Path,
) -> None:
    # As mounted in the container: prometheus.yml with the bundle's rules.yaml beside it.
    shutil.copy(DEPLOY / "compose" / "prometheus" / "prometheus.yml", tmp_path)
    shutil.copy(DEPLOY / "prometheus" / "rules.yaml", tmp_path)
    result = run(tool("promtool"), "check", "config", tmp_path / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


@pytest.mark.integration
def test_redis_runs_the_compose_command_and_keeps_nothing(tmp_path: Path) -> None:
    """The redis service's command, run by Debian's redis-server (the pinned image's release) on
    loopback and a free port: it starts, answers, and has no persistence to write."""
    command = service("redis")["command"]
    assert command[0] == "redis-server"
    port = free_port()
    argv = [tool("redis-server"), *command[1:], "--bind", HOST, "--port", str(port)]
    server = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        cli = (tool("redis-cli"), "-h", HOST, "-p", str(port))
        answered = wait_until(
            lambda: run(*cli, "ping").stdout.strip(),
            lambda out: out == "PONG",
            within=10,
            what="PONG from redis-server",
        )
        assert answered == "PONG"
        saved = run(*cli, "config", "get", "save").stdout.split()
        assert saved == ["save"], saved  # an empty value: no snapshots
        assert run(*cli, "config", "get", "appendonly").stdout.split() == ["appendonly", "no"]
    finally:
        server.terminate()
        server.wait(10)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_amtool_checks_the_compose_alertmanager_config_and_its_template(tmp_path: Path) -> None:
    # As mounted in the container: alertmanager.yml with the template beside it.
    shutil.copy(DEPLOY / "compose" / "alertmanager" / "alertmanager.yml", tmp_path)
    shutil.copy(DEPLOY / "alertmanager" / "wsmon.tmpl", tmp_path)
    result = run(tool("amtool"), "check-config", tmp_path / "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout
    assert "2 receivers" in result.stdout


@pytest.mark.integration
def test_the_docker_context_builds_a_wheel_that_installs_and_runs(tmp_path: Path) -> None:
    """The Dockerfile's build stage without Docker: the context as COPY puts it in the WORKDIR,
    `pip wheel` of it, the wheel installed alone and its `wsmon` run. The build's setuptools is
    this venv's (no download); the image installs the dependencies, here the venv has them."""
    context = tmp_path / "src"
    context.mkdir()
    copy_context(context)
    assert not (context / "loadgen" / "bench").exists()
    assert (context / "wsmon" / "exporter" / "app.py").is_file(), "a symlink did not resolve"
    wheels = tmp_path / "wheels"
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input")
    built = run(*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", wheels, context)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("wsmon-*.whl")
    target = tmp_path / "installed"
    installed = run(*pip, "install", "--no-deps", "--no-compile", "--target", target, wheel)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # The package data the server and the builds read came along.
    for data in (
        "alerting/thresholds.yaml",
        "alerting/runbooks.md",
        "deploy/docker-compose.yml",
        "deploy/compose/prometheus/prometheus.yml",
        "dashboards/generated/wsmon-overview.json",
    ):
        assert (target / "wsmon" / data).is_file(), data
    # The installed copy, not the checkout's editable one: PYTHONPATH comes before site-packages.
    env = {**os.environ, "PYTHONPATH": str(target)}
    # -P: not the current folder first, where the checkout's wsmon/ may be.
    where = run(sys.executable, "-P", "-c", "import wsmon; print(wsmon.__file__)", env=env)
    assert where.stdout.startswith(str(target)), where.stdout + where.stderr
    helped = run(target / "bin" / "wsmon", "serve", "--help", env=env)
    assert helped.returncode == 0, helped.stderr
    assert "--drain-seconds" in helped.stdout


@pytest.mark.integration
def test_the_health_checks_pass_on_a_live_server_and_fail_without_one(
    stack: Stack, c: dict[str, Any]
) -> None:
    """The image's and Compose's checks, pointed at a wsmon on a free port; no server, no pass."""
    _, port = stack.wsmon("--workers", "1")
    configured = c["deploy"]["ports"]["wsmon"]
    checks = []
    for check in (healthcheck_argv(), service("wsmon")["healthcheck"]["test"][1:]):
        # The image's python is the one on its PATH; here, this venv's.
        assert check[:2] == ["python", "-c"]
        assert f":{configured}/" in check[2]
        checks.append(check[2].replace(f":{configured}/", f":{port}/"))
    for source in checks:
        passed = run(sys.executable, "-c", source)
        assert passed.returncode == 0, passed.stderr
    stack.stop_all()
    for source in checks:
        failed = run(sys.executable, "-c", source)
        assert failed.returncode != 0
        assert "Connection refused" in failed.stderr
