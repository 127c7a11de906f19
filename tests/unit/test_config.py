"""Settings precedence and the errors a bad setting produces."""

from pathlib import Path

import pytest
from support.kubernetes import SERVICE_LINKS

from wsmon.exporter.config import ConfigError, Settings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wsmon.yaml"
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_given() -> None:
    settings = load_settings({}, {}, None)
    assert settings == Settings()
    assert settings.workers >= 1


def test_flags_beat_environment_beat_file_beat_defaults(tmp_path: Path) -> None:
    config = write(tmp_path, "port: 7000\nworkers: 3\nworker_capacity: 50\nlog_level: debug\n")
    env = {"WSMON_PORT": "7100", "WSMON_WORKERS": "4"}
    settings = load_settings({"port": 7200, "host": None}, env, config)
    assert settings.port == 7200  # flag
    assert settings.workers == 4  # environment
    assert settings.worker_capacity == 50  # file
    assert settings.log_level == "debug"
    assert settings.host == "127.0.0.1"  # default; a flag left unset (None) does not override


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = write(tmp_path, "worker-capacity: 9\n")
    settings = load_settings({}, {"WSMON_CONFIG": str(config)}, None)
    assert settings.worker_capacity == 9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("workers: many\n", "wsmon.yaml: workers: must be an integer 1-256, got 'many'"),
        ("port: 70000\n", "port: must be an integer 0-65535"),
        ("wrokers: 2\n", "unknown key 'wrokers' (did you mean 'workers'?)"),
        ("log_level: loud\n", "log_level: must be one of debug, info, warning, error"),
        ("rate_limit: true\n", "rate_limit: must be an integer >= 1, got True"),
        ("- just\n- a list\n", "must be a mapping of settings, got list"),
        ("port: [\n", "not valid YAML at line"),
    ],
)
def test_bad_file_names_key_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {}, write(tmp_path, text))
    assert expected in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings({}, {}, tmp_path / "absent.yaml")


def test_bad_environment_variable_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="environment WSMON_WORKER_CAPACITY: worker_capacity"):
        load_settings({}, {"WSMON_WORKER_CAPACITY": "0"}, None)


def test_unknown_environment_variable_warns_and_is_ignored() -> None:
    warnings: list[str] = []
    settings = load_settings({}, {"WSMON_PROT": "1", "WSMON_WORKERS": "3"}, None, warnings)
    assert settings.workers == 3
    assert warnings == [
        "ignoring unknown environment variable WSMON_PROT (did you mean WSMON_PORT?)"
    ]


def test_kubernetes_service_links_are_ignored_with_one_warning() -> None:
    warnings: list[str] = []
    env = {**SERVICE_LINKS, "WSMON_WORKER_CAPACITY": "7"}
    settings = load_settings({}, env, None, warnings)
    assert settings.port == Settings().port  # WSMON_PORT=tcp://... is the Service's, not ours
    assert settings.worker_capacity == 7  # a real setting beside them still applies
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("ignoring Kubernetes service-link variables ")
    for name in SERVICE_LINKS:
        assert name in warnings[0]


def test_a_port_that_is_not_a_service_link_is_still_checked() -> None:
    with pytest.raises(ConfigError, match="environment WSMON_PORT: port: must be an integer"):
        load_settings({}, {"WSMON_PORT": "http://x:1"}, None)


def test_bad_flag_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="--worker-capacity: worker_capacity: must be"):
        load_settings({"worker_capacity": -1}, {}, None)


def test_the_other_commands_variables_are_not_server_settings() -> None:
    warnings: list[str] = []
    env = {
        "WSMON_ALERTMANAGER_URL": "http://am:9093",
        "WSMON_PROMETHEUS_URL": "http://prometheus:9090",
        "WSMON_SMTP_FROM": "wsmon@example.org",
    }
    assert load_settings({}, env, None, warnings) == Settings()
    assert warnings == []
