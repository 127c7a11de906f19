"""`wsmon serve` refuses a bad setting before anything starts: a usage error (exit status 2) that
names where the setting came from. Run in-process through click's CliRunner; tests/conftest.py
turns a pool that would start anyway into a failure of the test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from wsmon.cli import main


@pytest.fixture(autouse=True)
def _no_wsmon_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test passes configures the server, not the WSMON_* of whoever runs the suite."""
    for name in os.environ:
        if name.startswith("WSMON_"):
            monkeypatch.delenv(name)


def serve(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["serve", *args], env=env)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--worker-capacity", "0"],
            {},
            "--worker-capacity: worker_capacity: must be an integer >= 1, got 0",
        ),
        (
            [],
            {"WSMON_DRAIN_SECONDS": "-1"},
            "environment WSMON_DRAIN_SECONDS: drain_seconds: must be a number > 0, got '-1'",
        ),
        (
            ["--log-level", "loud"],
            {},
            "--log-level: log_level: must be one of debug, info, warning, error, got 'loud'",
        ),
        (
            ["--config", "{missing}"],
            {},
            "{missing}: cannot read config file: there is no such file",
        ),
        (
            [],
            {"WSMON_THRESHOLDS_FILE": "{missing}"},
            "{missing}: cannot read thresholds: there is no such file",
        ),
    ],
    ids=["flag", "environment", "choice", "config file", "thresholds file"],
)
def test_a_bad_setting_is_a_usage_error(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    missing = str(tmp_path / "absent.yaml")
    result = serve(
        *(arg.format(missing=missing) for arg in args),
        env={name: value.format(missing=missing) for name, value in env.items()},
    )
    assert result.exit_code == 2, result.output
    assert f"Error: {message.format(missing=missing)}\n" in result.output


def test_settings_that_pass_validation_would_start_the_pool() -> None:
    """The guard of tests/conftest.py: a serve that gets past validation fails the test."""
    with pytest.raises(pytest.fail.Exception, match="config validation let a bad setting through"):
        serve("--port", "0", "--workers", "1", "--no-auth")


def test_a_server_without_a_way_to_check_tokens_does_not_start(tmp_path: Path) -> None:
    """Accepting everyone must be asked for by name (--no-auth), never what a missing setting
    gives; two ways at once, or a key file that cannot be used, stop the start too."""
    result = serve("--port", "0")
    assert result.exit_code == 2
    assert "no authentication configured: set auth_jwt_secret_file" in result.output
    assert "--no-auth for development" in result.output
    secret = tmp_path / "jwt.secret"
    secret.write_text("x" * 40)
    both = serve("--port", "0", "--no-auth", "--auth-jwt-secret-file", str(secret))
    assert both.exit_code == 2
    assert "no_auth and auth_jwt_secret_file are both set" in both.output
    secret.write_text("short")
    short = serve("--port", "0", "--auth-jwt-secret-file", str(secret))
    assert short.exit_code == 2
    assert f"{secret}: an HS256 secret needs at least 32 bytes" in short.output
    missing = serve("--port", "0", "--auth-tokens-file", str(tmp_path / "absent.yaml"))
    assert "cannot read tokens file: there is no such file" in missing.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--metrics-listen", "8081"],
            "--metrics-listen: metrics_listen: must be host:port ([::1]:port for IPv6), or"
            " empty, got '8081'",
        ),
        (
            ["--metrics-listen", "::1:8081"],
            "--metrics-listen: metrics_listen: must be host:port ([::1]:port for IPv6), or"
            " empty, got '::1:8081'",
        ),
        (
            ["--metrics-web-config-file", "{web}"],
            "metrics_web_config_file is set but metrics_listen is not",
        ),
        (
            ["--metrics-listen", "127.0.0.1:8080", "--port", "8080"],
            "metrics_listen 127.0.0.1:8080 is the public address 127.0.0.1:8080",
        ),
        (
            ["--metrics-listen", "127.0.0.1:0", "--metrics-web-config-file", "{web}"],
            "{web}: basic_auth_users.prometheus: not a bcrypt hash",
        ),
        (
            ["--broker", "localhost:6379"],
            "--broker: broker: must be redis://[user:password@]host:port/db, rediss://… (TLS)"
            " or unix://path, or empty, got 'localhost:6379'",
        ),
        (
            ["--broker-password-file", "{web}"],
            "broker_password_file is set but broker is not: set broker too",
        ),
        (
            ["--broker", "redis://:pw@localhost:6379/0", "--broker-password-file", "{web}"],
            "broker names a password and broker_password_file is set too",
        ),
        (
            ["--broker", "redis://localhost:6379/0", "--broker-password-file", "{web}.absent"],
            "{web}.absent: cannot read the broker password file: No such file or directory",
        ),
        (
            ["--max-connections-per-user", "-1"],
            "--max-connections-per-user: max_connections_per_user: must be an integer >= 0"
            " (0: off), got -1",
        ),
    ],
    ids=[
        "no host",
        "bare IPv6",
        "web config alone",
        "the public port",
        "bad web config",
        "broker URL",
        "broker password alone",
        "two broker passwords",
        "broker password unreadable",
        "cap",
    ],
)
def test_a_bad_listener_broker_or_cap_stops_the_start(
    tmp_path: Path, args: list[str], message: str
) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users: {prometheus: plain-password}\n")
    result = serve("--no-auth", *(arg.format(web=web) for arg in args))
    assert result.exit_code == 2, result.output
    assert message.format(web=web) in result.output
