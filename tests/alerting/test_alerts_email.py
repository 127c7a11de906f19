"""`wsmon alerts email show | set | test`: the SMTP settings of the Alertmanager config, and a mail.

`show` and `set` are unit tests on files. `test` posts a synthetic alert; the integration test
sends it through a real Alertmanager (Debian's, with the config `set` wrote, group_wait 30 s as
generated) and waits for the mail at an SMTP sink.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from support.polling import wait_until
from support.processes import free_port
from support.stack import HOST, SmtpSink, Stack

from wsmon.alerting.email_cli import TEST_ALERT
from wsmon.cli import main

GENERATED = Path(__file__).resolve().parents[2] / "alerting" / "generated" / "alertmanager.yml"
SETTINGS = (
    *("--smarthost", "mail.example.org:587", "--from", "wsmon@example.org"),
    *("--warning-to", "team@example.org", "--critical-to", "oncall@example.org"),
    *("--username", "wsmon", "--password-file", "/etc/alertmanager/smtp_password"),
)


def wsmon(*argv: str) -> Result:
    return CliRunner().invoke(main, ["alerts", "email", *argv])


def receivers(directory: Path) -> dict[str, dict[str, object]]:
    document = yaml.safe_load((directory / "alertmanager.yml").read_text())
    return {r["name"]: r["email_configs"][0] for r in document["receivers"]}


def test_show_reads_the_generated_config(tmp_path: Path) -> None:
    result = wsmon("show", "--config", str(GENERATED))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "smarthost:     smtp.example.com:587",
        "from:          wsmon-alerts@example.com",
        "warning to:    oncall@example.com",
        "critical to:   oncall@example.com",
        "username:      wsmon-alerts@example.com",
        "password file: /etc/alertmanager/smtp_password",
        "require TLS:   yes",
    ]
    other = tmp_path / "alertmanager.yml"
    other.write_text("route: {receiver: team}\nreceivers: [{name: team}]\n")
    refused = wsmon("show", "--config", str(other))
    assert refused.exit_code == 1
    assert "not an Alertmanager config wsmon rendered" in refused.output


def test_set_writes_the_settings_and_keeps_those_not_given(tmp_path: Path) -> None:
    result = wsmon("set", *SETTINGS, "--output", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert f"wrote alertmanager.yml, wsmon.tmpl to {tmp_path} (changed)" in result.stdout
    mails = receivers(tmp_path)
    assert mails["wsmon-warning"]["to"] == "team@example.org"
    assert mails["wsmon-critical"]["to"] == "oncall@example.org"
    assert mails["wsmon-critical"]["auth_password_file"] == "/etc/alertmanager/smtp_password"
    assert not (tmp_path / "rules.yaml").exists()  # Alertmanager's files only

    again = wsmon("set", "--critical-to", "pager@example.org", "--output", str(tmp_path))
    assert again.exit_code == 0, again.output
    shown = json.loads(
        wsmon("show", "--json", "--config", str(tmp_path / "alertmanager.yml")).stdout
    )
    assert shown == {
        "smarthost": "mail.example.org:587",
        "from": "wsmon@example.org",
        "warningTo": "team@example.org",
        "criticalTo": "pager@example.org",
        "username": "wsmon",
        "passwordFile": "/etc/alertmanager/smtp_password",
        "requireTls": True,
    }


def test_set_names_every_missing_setting_by_its_option(tmp_path: Path) -> None:
    result = wsmon(
        "set", "--smarthost", "mail.example.org", "--username", "u", "--output", str(tmp_path)
    )
    assert result.exit_code == 1
    assert result.output.splitlines()[1:] == [
        "--from: not set",
        "--warning-to: not set (nor --to)",
        "--critical-to: not set (nor --to)",
        "--password-file: not set, but --username is (a relay login needs both)",
    ]
    assert "--smarthost: must be host:port, got 'mail.example.org'" in result.output
    assert not (tmp_path / "alertmanager.yml").exists()


@pytest.mark.parametrize(
    "argv", [("--password", "hunter2"), ("--password=hunter2",), ("--password",)]
)
def test_a_password_on_the_command_line_is_refused(tmp_path: Path, argv: tuple[str, ...]) -> None:
    result = wsmon("set", *SETTINGS, *argv, "--output", str(tmp_path))
    assert result.exit_code == 2
    assert "a password is never given on the command line" in result.output
    assert "--password-file PATH" in result.output
    assert not (tmp_path / "alertmanager.yml").exists()
    assert "--password " not in wsmon("set", "--help").output


def test_test_exits_2_when_alertmanager_does_not_answer() -> None:
    result = wsmon("test", "--alertmanager", f"http://{HOST}:{free_port()}")
    assert result.exit_code == 2
    assert "cannot reach Alertmanager at" in result.output


@pytest.mark.integration
def test_the_test_mail_arrives_through_a_real_alertmanager(stack: Stack, tmp_path: Path) -> None:
    sink = SmtpSink()
    sink.start()
    try:
        config = tmp_path / "am"
        written = wsmon(
            *("set", "--smarthost", f"{HOST}:{sink.port}", "--from", "wsmon@test.invalid"),
            *("--warning-to", "team@test.invalid", "--critical-to", "oncall@test.invalid"),
            *("--username", "", "--no-require-tls", "--output", str(config)),
        )
        assert written.exit_code == 0, written.output
        critical = receivers(config)["wsmon-critical"]
        assert "auth_username" not in critical  # a relay without a login: no auth fields
        assert critical["require_tls"] is False
        _, url = stack.alertmanager(config / "alertmanager.yml", tmp_path / "am-data")
        sent = wsmon("test", "--severity", "critical", "--wait", "--alertmanager", url)
        assert sent.exit_code == 0, sent.output
        assert f"Alertmanager at {url} accepted {TEST_ALERT} (severity=critical" in sent.stdout
        assert f"Alertmanager holds {TEST_ALERT} as active" in sent.stdout
        # The generated route's group_wait is 30 s: the mail follows it.
        [mail] = wait_until(
            lambda: sink.matching(TEST_ALERT),
            bool,
            within=60,
            what="the test mail at the SMTP sink",
            interval=0.5,
        )
        assert mail.subject.startswith(f"[FIRING:1] {TEST_ALERT} (critical) on email-test-")
        assert mail.to == "oncall@test.invalid"
        assert "Test notification from `wsmon alerts email test`" in mail.text
    finally:
        sink.stop()
