"""The Autobahn|Testsuite's fuzzing client (`wstest -m fuzzingclient`) against a running server.

autobahntestsuite 0.8.2 is Python 2 only, so this module finds pyenv's Python 2.7.18, installs
the pinned packages of autobahn-requirements.txt into a private folder with
`pip install --no-deps --target` (once: the folder is cached beside this virtualenv, keyed by the
pins), and runs wstest through a small Python 2 launcher that loads that folder with
`site.addsitedir` (which also reads zope's namespace .pth file). Nothing is installed into the
interpreter itself, except pip when it has none (ensurepip).

A missing Python 2.7 fails the test with what is missing and how to get it: CI skips no test for
want of a tool.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

PYTHON27_VERSION = "2.7.18"
PINS = Path(__file__).with_name("autobahn-requirements.txt")
# Installed after the pins, allowed to fail: a C extension from an sdist (no wheels exist), so it
# needs gcc and Python 2's headers. It makes the client's masking and UTF-8 checks native: case 9
# (up to 16 MiB messages) takes about 7 s with it and 48 s without, on this 2-core machine.
ACCELERATOR = "wsaccel==0.6.6"
# Overrides, for a machine whose Python 2.7 is not pyenv's or whose venv is read-only.
PYTHON_ENV = "AUTOBAHN_PYTHON"
CACHE_ENV = "AUTOBAHN_CACHE_DIR"
INSTALL_TIMEOUT = 300.0  # seconds for pip: about 25 s here, more on a slow registry mirror
STALE_PARTIAL = 3600.0  # a half-written install this old is from a run that was killed

# Case outcomes as the suite reports them (autobahntestsuite/case.py).
OK = "OK"
NON_STRICT = "NON-STRICT"
INFORMATIONAL = "INFORMATIONAL"
UNIMPLEMENTED = "UNIMPLEMENTED"
FAILED = "FAILED"
# behaviorClose values that mean the closing handshake was right (or the spec leaves it open).
GOOD_CLOSE = frozenset({OK, INFORMATIONAL})

# Run by Python 2 (kept to syntax both accept). The target folder goes first on sys.path so its
# setuptools (pkg_resources) wins over the interpreter's older one; addsitedir then reads its
# .pth files. cryptography warns at every start that Python 2 is deprecated: known, and noise.
LAUNCHER = """\
import site, sys, warnings
target = sys.argv.pop(1)
sys.path.insert(0, target)
site.addsitedir(target)
warnings.filterwarnings("ignore", message="Python 2 is no longer supported")
from autobahntestsuite.wstest import run
sys.exit(run())
"""


class AutobahnSetupError(Exception):
    """Python 2.7, pip or the suite could not be found or installed; the message says which."""


# -- Python 2.7 ----------------------------------------------------------------------------------


def _python_version(python: Path) -> str | None:
    """'2.7.18' for a working interpreter at `python`, else None."""
    if not python.is_file() or not os.access(python, os.X_OK):
        return None
    try:
        done = subprocess.run(
            [str(python), "-E", "-s", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _pyenv_roots() -> list[Path]:
    roots = [Path(root) for root in [os.environ.get("PYENV_ROOT")] if root]
    roots += [Path.home() / ".pyenv", Path("/root/.pyenv")]
    return list(dict.fromkeys(roots))


def _pyenv_prefix(pyenv: Path) -> Path | None:
    """`pyenv prefix 2.7.18`: where pyenv itself says that version lives."""
    try:
        done = subprocess.run(
            [str(pyenv), "prefix", PYTHON27_VERSION], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    prefix = done.stdout.strip()
    return Path(prefix) / "bin" / "python" if done.returncode == 0 and prefix else None


def python27_candidates() -> list[Path]:
    """Where a Python 2.7 may be, in order: $AUTOBAHN_PYTHON, $PYENV_ROOT, `pyenv prefix`, ~."""
    if override := os.environ.get(PYTHON_ENV):
        return [Path(override)]  # an explicit choice is never silently replaced by another
    roots = _pyenv_roots()
    candidates = [root / "versions" / PYTHON27_VERSION / "bin" / "python" for root in roots[:1]]
    pyenvs = [Path(found)] if (found := shutil.which("pyenv")) else []
    pyenvs += [root / "bin" / "pyenv" for root in roots]
    for pyenv in dict.fromkeys(pyenvs):
        if pyenv.is_file() and (prefix := _pyenv_prefix(pyenv)):
            candidates.append(prefix)
            break
    candidates += [root / "versions" / PYTHON27_VERSION / "bin" / "python" for root in roots]
    return list(dict.fromkeys(candidates))


def find_python27() -> tuple[Path, str]:
    """The first working Python 2.7 of python27_candidates() and its version."""
    candidates = python27_candidates()
    for python in candidates:
        version = _python_version(python)
        if version is not None and version.startswith("2.7."):
            return python, version
    looked = ", ".join(str(python) for python in candidates)
    raise AutobahnSetupError(
        f"the Autobahn|Testsuite needs Python 2.7 (pyenv's {PYTHON27_VERSION}); none works at"
        f" {looked}. Install it with `pyenv install {PYTHON27_VERSION}` (pyenv in $PYENV_ROOT or"
        f" ~/.pyenv), or point ${PYTHON_ENV} at a python2.7 binary."
    )


# -- installing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wstest:
    """An installed fuzzing client: `python -E -s launcher target ARGS` runs wstest."""

    python: Path
    version: str
    target: Path
    accelerated: bool  # whether wsaccel made it in (see ACCELERATOR)
    installed_now: bool  # False when the cached folder was used
    install_seconds: float = 0.0

    @property
    def launcher(self) -> Path:
        return self.target / "wstest_launcher.py"

    def argv(self, *args: str) -> list[str]:
        return [str(self.python), "-E", "-s", str(self.launcher), str(self.target), *args]


def _cache_root() -> Path:
    # Inside the virtualenv by default: `make clean` removes it along with everything else.
    return Path(os.environ.get(CACHE_ENV) or Path(sys.prefix) / "autobahntestsuite")


def cache_key(version: str) -> str:
    """Changes whenever what would be installed changes: pins, accelerator, launcher, Python."""
    digest = hashlib.sha256()
    for part in (PINS.read_bytes(), ACCELERATOR.encode(), LAUNCHER.encode(), version.encode()):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def _run(argv: Sequence[str], what: str, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise AutobahnSetupError(
            f"{what} did not finish in {timeout:.0f}s: {' '.join(argv)}"
        ) from exc


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _ensure_pip(python: Path) -> None:
    """pip (with setuptools, for the two sdists) in the interpreter; ensurepip adds them if not."""
    check = [str(python), "-E", "-s", "-c", "import pip, setuptools"]
    if _run(check, "importing pip", 60).returncode == 0:
        return
    done = _run([str(python), "-E", "-s", "-m", "ensurepip", "--default-pip"], "ensurepip", 120)
    if done.returncode != 0 or _run(check, "importing pip", 60).returncode != 0:
        raise AutobahnSetupError(
            f"{python} has no pip and `-m ensurepip` could not add it:\n"
            f"{_tail(done.stdout + done.stderr)}"
        )


def _remove_stale_partials(root: Path) -> None:
    for partial in root.glob("*.partial-*"):
        with contextlib.suppress(OSError):
            if time.time() - partial.stat().st_mtime > STALE_PARTIAL:
                shutil.rmtree(partial)


def _install(python: Path, version: str, target: Path) -> bool:
    """Install the pins (and, if it builds, the accelerator) into `target`; True if accelerated."""
    _ensure_pip(python)
    pip = [
        str(python),
        "-E",
        "-s",
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-warn-script-location",
    ]
    done = _run([*pip, "--target", str(target), "-r", str(PINS)], "pip install", INSTALL_TIMEOUT)
    if done.returncode != 0:
        raise AutobahnSetupError(
            f"pip could not install {PINS.name} into {target} with {python} ({version}):\n"
            f"{_tail(done.stdout + done.stderr)}"
        )
    # Into a folder of its own, then moved in: a failed build must leave the pinned set intact.
    # Its failure (no compiler, no headers, too slow) only costs speed; its log stays for a look.
    accelerated = False
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        try:
            fast = _run([*pip, "--target", scratch, ACCELERATOR], "pip install wsaccel", 180)
        except AutobahnSetupError as exc:
            output = str(exc)
        else:
            accelerated, output = fast.returncode == 0, fast.stdout + fast.stderr
        if accelerated:
            for entry in Path(scratch).iterdir():
                shutil.move(str(entry), target / entry.name)
        else:
            (target / "wsaccel-install.log").write_text(output)
    (target / "wstest_launcher.py").write_text(LAUNCHER)
    # A start that fails here (a bad pin, a missing import) names the cause, not a case.
    unchecked = Wstest(python, version, target, accelerated=False, installed_now=True)
    probe = _run(unchecked.argv("--autobahnversion"), "wstest --autobahnversion", 60)
    if probe.returncode != 0:
        raise AutobahnSetupError(
            f"wstest does not start from {target}:\n{_tail(probe.stdout + probe.stderr)}"
        )
    return accelerated


def install() -> Wstest:
    """The fuzzing client, installed now or found complete in the cache."""
    python, version = find_python27()
    root = _cache_root()
    target = root / f"py{version}-{cache_key(version)}"
    marker = target / "installed.json"
    started = time.monotonic()
    if marker.is_file():
        state = json.loads(marker.read_text())
        return Wstest(python, version, target, bool(state["accelerated"]), installed_now=False)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(root)
    # Built under a temporary name and renamed when complete, so a run killed halfway (or two
    # checkouts sharing a cache) never see a half-installed folder as the cache.
    partial = Path(tempfile.mkdtemp(dir=root, prefix=f"{target.name}.partial-"))
    try:
        accelerated = _install(python, version, partial)
        (partial / "installed.json").write_text(
            json.dumps({"python": str(python), "version": version, "accelerated": accelerated})
        )
        try:
            partial.rename(target)
        except OSError:
            if not marker.is_file():  # not a concurrent install that won the race: a real error
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    # Installs for older pins are dead weight (about 70 MB each) once the pins have moved on.
    for old in root.glob("py*-*"):
        if old != target and ".partial-" not in old.name:
            shutil.rmtree(old, ignore_errors=True)
    state = json.loads(marker.read_text())
    seconds = time.monotonic() - started
    return Wstest(python, version, target, bool(state["accelerated"]), True, seconds)


# -- running and reading the report ---------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    """One case of reports/index.json, with its description for the non-OK ones."""

    case: str
    behavior: str
    behavior_close: str
    remote_close_code: int | None
    duration_ms: int
    description: str = ""
    result: str = ""

    @property
    def sort_key(self) -> tuple[int, ...]:
        return case_key(self.case)

    def line(self) -> str:
        return (
            f"{self.case} {self.behavior} (close {self.behavior_close}, remote code"
            f" {self.remote_close_code}, {self.duration_ms} ms)"
        )


def case_key(case: str) -> tuple[int, ...]:
    """'9.10.2' -> (9, 10, 2): cases in the suite's own order, not as strings sort."""
    return tuple(int(part) for part in case.split("."))


@dataclass(frozen=True)
class Report:
    cases: dict[str, CaseResult]
    seconds: float  # wall time of the wstest run
    folder: Path

    def counts(self) -> Counter[str]:
        return Counter(result.behavior for result in self.cases.values())

    def having(self, behaviors: Iterable[str]) -> list[CaseResult]:
        wanted = set(behaviors)
        found = [result for result in self.cases.values() if result.behavior in wanted]
        return sorted(found, key=lambda result: result.sort_key)

    def summary(self) -> str:
        counts = self.counts()
        order = [OK, NON_STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED]
        shown = [f"{name} {counts[name]}" for name in order if counts[name]]
        shown += [f"{name} {n}" for name, n in sorted(counts.items()) if name not in order]
        return f"{len(self.cases)} cases in {self.seconds:.1f}s: " + ", ".join(shown)


def read_report(folder: Path, agent: str) -> dict[str, CaseResult]:
    """Parse `folder`/index.json for `agent`; the per-case file too for every case not OK."""
    index = json.loads((folder / "index.json").read_text())
    results: dict[str, CaseResult] = {}
    for case, entry in index[agent].items():
        description = result = ""
        if entry["behavior"] != OK or entry["behaviorClose"] != OK:
            detail = json.loads((folder / entry["reportfile"]).read_text())
            description = re.sub(r"<br>|\s+", " ", str(detail.get("description", ""))).strip()
            result = str(detail.get("result", ""))
        results[case] = CaseResult(
            case=case,
            behavior=entry["behavior"],
            behavior_close=entry["behaviorClose"],
            remote_close_code=entry.get("remoteCloseCode"),
            duration_ms=int(entry.get("duration", 0)),
            description=description,
            result=result,
        )
    return results


def run_fuzzingclient(
    wstest: Wstest,
    url: str,
    cases: Sequence[str],
    folder: Path,
    *,
    agent: str = "wsmon",
    exclude: Sequence[str] = (),
    options: Mapping[str, object] | None = None,
    timeout: float = 150.0,
) -> Report:
    """Run `cases` (patterns like "9.*") against `url`; reports and wstest.log go to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "outdir": str(folder),
        "servers": [{"agent": agent, "url": url, "options": dict(options or {})}],
        "cases": list(cases),
        "exclude-cases": list(exclude),
        "exclude-agent-cases": {},
    }
    spec_file = folder / "fuzzingclient.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    log = folder / "wstest.log"
    started = time.monotonic()
    with log.open("w") as out:
        try:
            done = subprocess.run(
                wstest.argv("--mode", "fuzzingclient", "--spec", str(spec_file)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=folder,  # wstest writes nothing else, but keep it out of the checkout anyway
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"wstest did not finish {list(cases)} in {timeout:.0f}s; its log:\n"
                f"{_tail(log.read_text())}",
                pytrace=False,
            )
    seconds = time.monotonic() - started
    if done.returncode != 0 or not (folder / "index.json").is_file():
        pytest.fail(
            f"wstest exited {done.returncode} without a report; its log:\n{_tail(log.read_text())}",
            pytrace=False,
        )
    return Report(read_report(folder, agent), seconds, folder)
