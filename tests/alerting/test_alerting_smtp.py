"""SMTP settings come from WSMON_SMTP_* at render time; the password only ever by file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support.stack import tool

from wsmon.alerting.smtp import SmtpSettingsError, from_environment
from wsmon.cli import main
from wsmon.exporter.config import load_settings

RELAY = {
    "WSMON_SMTP_SMARTHOST": "mail.internal:587",
    "WSMON_SMTP_FROM": "wsmon@corp.example",
    "WSMON_SMTP_TO": "oncall@corp.example",
    "WSMON_SMTP_USERNAME": "wsmon",
    "WSMON_SMTP_PASSWORD_FILE": "/run/secrets/smtp",
}


def test_settings_from_the_environment() -> None:
    env = RELAY | {"WSMON_SMTP_CRITICAL_TO": "pager@corp.example", "PATH": "/bin"}
    assert from_environment(env) == {
        "smarthost": "mail.internal:587",
        "from": "wsmon@corp.example",
        "warningTo": "oncall@corp.example",
        "criticalTo": "pager@corp.example",
        "username": "wsmon",
        "passwordFile": "/run/secrets/smtp",
        "requireTls": True,
    }


def test_a_relay_without_login_gets_no_auth() -> None:
    env = {k: v for k, v in RELAY.items() if "USERNAME" not in k and "PASSWORD" not in k}
    settings = from_environment(env | {"WSMON_SMTP_REQUIRE_TLS": "false"})
    assert settings["username"] == ""
    assert "passwordFile" not in settings
    assert settings["requireTls"] is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "WSMON_SMTP_SMARTHOST: not set"),
        (RELAY | {"WSMON_SMTP_PASSWORD": "hunter2"}, "WSMON_SMTP_PASSWORD: a password is never"),
        (RELAY | {"WSMON_SMTP_HOST": "x"}, "WSMON_SMTP_HOST: unknown variable; known:"),
        (RELAY | {"WSMON_SMTP_SMARTHOST": "mail"}, "SMARTHOST: must be host:port, got 'mail'"),
        (RELAY | {"WSMON_SMTP_REQUIRE_TLS": "maybe"}, "REQUIRE_TLS: must be true or false"),
        ({**RELAY, "WSMON_SMTP_PASSWORD_FILE": ""}, "PASSWORD_FILE: not set, but"),
        ({**RELAY, "WSMON_SMTP_TO": ""}, "WSMON_SMTP_TO: not set"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], expected: str) -> None:
    with pytest.raises(SmtpSettingsError, match=expected):
        from_environment(env)


@pytest.mark.integration
def test_render_config_writes_a_valid_config_without_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in RELAY.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["alerts", "render-config", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in tmp_path.iterdir()} == {"alertmanager.yml", "wsmon.tmpl"}
    text = (tmp_path / "alertmanager.yml").read_text()
    config = yaml.safe_load(text)
    for receiver in config["receivers"]:
        (email,) = receiver["email_configs"]
        assert email["smarthost"] == "mail.internal:587"
        assert email["auth_password_file"] == "/run/secrets/smtp"
        assert email["to"] == "oncall@corp.example"
    assert "example.com" not in text, "no placeholder survives"
    checked = subprocess.run(
        [tool("amtool"), "check-config", str(tmp_path / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_render_config_refuses_missing_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSMON_SMTP_FROM", "wsmon@corp.example")
    result = CliRunner().invoke(main, ["alerts", "render-config", "--output", str(tmp_path)])
    assert result.exit_code == 1
    assert "WSMON_SMTP_SMARTHOST: not set" in result.output
    assert not (tmp_path / "alertmanager.yml").exists()


def test_smtp_and_alertmanager_variables_do_not_trouble_wsmon_serve() -> None:
    env = RELAY | {"WSMON_ALERTMANAGER_URL": "http://am:9093", "WSMON_PORT": "9000"}
    assert load_settings({}, env, None).port == 9000
