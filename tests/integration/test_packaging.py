"""The wheel as a user gets it: one top-level import package, its data files, no bench harness."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LEFT_BEHIND = shutil.ignore_patterns(
    ".git", ".venv*", "build", "*.egg-info", "reports", "__pycache__", ".*_cache"
)


def run(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy (symlinks kept), so the build's own files never land in the checkout.
    source = tmp_path_factory.mktemp("source") / "wsmon"
    shutil.copytree(REPO, source, symlinks=True, ignore=LEFT_BEHIND)
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: the build backend is already in the venv, and nothing is downloaded.
    run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
        "--wheel-dir", str(out), str(source), cwd=out,
    )  # fmt: skip
    (built,) = out.glob("wsmon-*.whl")
    return built


def test_the_wheel_holds_one_import_package_and_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    (info,) = (t for t in top if t.endswith(".dist-info"))
    assert top == {"wsmon", info}, top
    assert not [n for n in names if n.startswith("wsmon/loadgen/bench/")], "bench is for developers"
    for data in (
        "wsmon/py.typed",
        "wsmon/alerting/thresholds.yaml",
        "wsmon/alerting/runbooks.md",
        "wsmon/alerting/main.jsonnet",
        "wsmon/alerting/rules.libsonnet",
        "wsmon/alerting/email.tmpl",
        "wsmon/alerting/configured.libsonnet",
        "wsmon/dashboards/lib.libsonnet",
        "wsmon/dashboards/overview.jsonnet",
        "wsmon/dashboards/generated/wsmon-overview.json",
        "wsmon/exporter/testing.html",
        "wsmon/deploy/bundle.jsonnet",
        "wsmon/deploy/common.libsonnet",
        "wsmon/deploy/wsmon/wsmon.yaml",
    ):
        assert data in names, data
    assert f"{info}/licenses/LICENSE" in names
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "Provides-Extra: loadtest" in metadata
    assert "Provides-Extra: alerting" in metadata
    # A server install does not pull the load generator's or the Jsonnet build's libraries.
    required = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    server = [line for line in required if "extra ==" not in line]
    assert not [line for line in server if "websockets" in line or "jsonnet" in line], server


def test_the_installed_copy_runs_from_anywhere(wheel: Path, tmp_path: Path) -> None:
    """Installed (not editable), started from a folder that holds an `exporter/` and an
    `alerting/` of its own: wsmon runs its own modules and finds its packaged data."""
    target = tmp_path / "site"
    run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--quiet",
        "--target",
        str(target),
        str(wheel),
        cwd=tmp_path,
    )
    assert {p.name for p in target.iterdir() if not p.name.endswith(".dist-info")} == {
        "wsmon",
        "bin",
    }
    for decoy in ("exporter", "alerting", "wsmon"):
        (tmp_path / decoy).mkdir()
        (tmp_path / decoy / "__init__.py").write_text("raise SystemExit('decoy imported')\n")
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = run(
        sys.executable,
        "-P",
        "-c",
        "import wsmon.exporter.app as a; print(a.__file__)",
        cwd=tmp_path,
        env=env,
    )
    assert where.startswith(str(target / "wsmon" / "exporter")), where
    out = tmp_path / "generated"
    run(
        sys.executable,
        "-P",
        "-c",
        "import sys; sys.argv[0] = 'wsmon'; from wsmon.cli import main; main()",
        "rules",
        "build",
        "--output",
        str(out),
        cwd=tmp_path,
        env=env,
    )
    assert (out / "rules.yaml").read_text() == (
        REPO / "alerting" / "generated" / "rules.yaml"
    ).read_text()
