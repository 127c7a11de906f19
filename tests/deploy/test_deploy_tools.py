"""The bundle as Prometheus', Alertmanager's and systemd's own checkers read it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bundle import DEPLOY, config, exec_start
from support.stack import tool

pytestmark = pytest.mark.integration

UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_checks_the_config_and_finds_the_rules_beside_it() -> None:
    # rule_files is relative to prometheus.yml, so the checked-in file is checked as it is: the
    # layout of deploy/prometheus/ is the installed one.
    result = run(tool("promtool"), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    assert "rules found" in result.stdout


def test_amtool_checks_the_alertmanager_config_and_its_template() -> None:
    am = DEPLOY / "alertmanager" / "alertmanager.yml"
    result = run(tool("amtool"), "check-config", str(am))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verifies_the_unit(path: Path, tmp_path: Path) -> None:
    """`systemd-analyze verify` fails a unit whose ExecStart binary is missing: wsmon's install
    path (/usr/local/bin) is pointed at this venv's wsmon; the Debian ones are the real ones."""
    assert len(UNITS) == 3
    c = config()
    text = path.read_text()
    binary = exec_start(path)[0]
    if binary == c["deploy"]["paths"]["wsmon"]:
        text = text.replace(binary, str(Path(sys.executable).with_name("wsmon")))
    else:
        assert Path(binary).is_file(), f"{binary} is not installed here: `make tools`"
    copy = tmp_path / path.name
    copy.write_text(text)
    result = run(tool("systemd-analyze"), "verify", str(copy))
    # Warnings (an unknown key, a bad value) go to stderr with exit 0: none is allowed either.
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
