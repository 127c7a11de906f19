"""`promtool check web-config` and wsmon's web config loader (exporter/webconfig.py) agree.

Debian's promtool 2.42 (exporter-toolkit 0.8) runs the toolkit's own web.Validate: the YAML is
read strictly (an unknown key or a wrong type is an error), every basic_auth_users value must be
a bcrypt hash of cost 4 to 31 (bcrypt.Cost: it does not look at the $2?$ letter), headers must
be the toolkit's five with their allowed values, the certificate and key are read and must be a
pair, a client_ca_file must be readable, client_auth_type and the TLS version, cipher and curve
names must be known ones, and a client CA without a client_auth_type is refused. It does not
check that min_version <= max_version, nor that a verifying client_auth_type has a CA (Go would
fall back to the system's), nor what the CA file holds. Newer toolkits know more keys (inline
cert/key/client_ca, client_allowed_sans, rate_limit): those are left out of the cases here, so
that a newer promtool does not turn a case around.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
from support.tls import make_pki

from wsmon.exporter import webconfig

pytestmark = pytest.mark.integration

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
WSMON = Path(sys.executable).parent / "wsmon"
HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
TLS = (
    "tls_server_config: {cert_file: server.pem, key_file: server.key"  # relative: the file's folder
)

# Accepted by both.
VALID = {
    "empty": "",
    "empty sections": "tls_server_config: {}\nhttp_server_config:\nbasic_auth_users: {}",
    "users": f"basic_auth_users: {{prometheus: '{HASH}', alice: '{HASH.replace('$2b$', '$2y$')}'}}",
    "tls": TLS + "}",
    "tls in full": TLS + ", client_auth_type: RequireAndVerifyClientCert, client_ca_file: ca.pem,"
    " min_version: TLS13, max_version: TLS13, prefer_server_cipher_suites: false}",
    "client cert if given": TLS
    + ", client_auth_type: VerifyClientCertIfGiven, client_ca_file: ca.pem}",
    "http": "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: sameorigin\n"
    "    X-Content-Type-Options: nosniff\n    X-XSS-Protection: '1; mode=block'\n"
    "    Strict-Transport-Security: max-age=31536000\n"
    "    Content-Security-Policy: \"default-src 'self'\"",
    "header as a number": "http_server_config: {headers: {X-XSS-Protection: 0}}",
}

# Refused by both.
INVALID = {
    "unknown key": "basic_auth_user: {}",
    "unknown nested key": TLS + ", cert_fil: server.pem}",
    "not a mapping": "- basic_auth_users",
    "plain password": "basic_auth_users: {prometheus: hunter2}",
    "no hash": "basic_auth_users: {prometheus: }",
    "bcrypt cost 3": "basic_auth_users: {prometheus: '$2b$03$" + "a" * 53 + "'}",
    "missing key_file": "tls_server_config: {cert_file: server.pem}",
    "missing cert_file": "tls_server_config: {key_file: server.key}",
    "blank cert_file": "tls_server_config: {cert_file: '', key_file: server.key}",
    "no such cert_file": "tls_server_config: {cert_file: nope.pem, key_file: server.key}",
    "key not the cert's": "tls_server_config: {cert_file: server.pem, key_file: other.key}",
    "bad client_auth_type": TLS + ", client_auth_type: VerifyClientCert}",
    "client CA without client auth": TLS + ", client_ca_file: ca.pem}",
    "no such client_ca_file": TLS
    + ", client_auth_type: RequireAndVerifyClientCert, client_ca_file: nope.pem}",
    "unknown TLS version": TLS + ", min_version: TLS14}",
    "header not allowed": "http_server_config: {headers: {Server: wsmon}}",
    "header in lower case": "http_server_config: {headers: {x-frame-options: deny}}",
    "header value not allowed": "http_server_config: {headers: {X-Frame-Options: allow}}",
    "http2 not a boolean": "http_server_config: {http2: maybe}",
}

# Accepted by promtool, refused by wsmon on purpose (exporter/webconfig.py says why): pinned
# here so that the list of differences stays the documented one.
WSMON_STRICTER = {
    "unverified client cert": TLS + ", client_auth_type: RequireAnyClientCert}",
    "requested client cert": TLS + ", client_auth_type: RequestClientCert}",
    "verifying without a CA": TLS + ", client_auth_type: RequireAndVerifyClientCert}",
    "Go cipher names": TLS + ", cipher_suites: [TLS_AES_128_GCM_SHA256]}",
    "Go curve names": TLS + ", curve_preferences: [X25519]}",
    "min_version above max_version": TLS + ", min_version: TLS13, max_version: TLS12}",
    "TLS settings without a certificate": "tls_server_config: {min_version: TLS13}",
    "$2x$ hash": f"basic_auth_users: {{prometheus: '{HASH.replace('$2b$', '$2x$')}'}}",
    "a number as user name": f"basic_auth_users: {{123: '{HASH}'}}",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem, server.pem with server.key (signed by that CA), and an unrelated other.key."""
    folder = tmp_path_factory.mktemp("webconfig")
    make_pki(folder)
    return folder


def promtool(path: Path) -> tuple[bool, str]:
    """Run from another folder: relative paths in the file are the file's folder's."""
    checked = subprocess.run(
        [PROMTOOL, "check", "web-config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    return checked.returncode == 0, checked.stdout + checked.stderr


def wsmon(path: Path) -> tuple[bool, str]:
    try:
        webconfig.load(path)
    except webconfig.WebConfigError as exc:
        return False, str(exc)
    return True, ""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / (name.replace(" ", "_").replace("$", "") + ".yml")
    path.write_text(text + "\n")
    return path


@pytest.mark.parametrize("text", VALID.values(), ids=VALID.keys())
def test_both_accept(folder: Path, request: pytest.FixtureRequest, text: str) -> None:
    path = write(folder, request.node.callspec.id, text)
    assert promtool(path) == (True, f"{path} SUCCESS\n")
    assert wsmon(path) == (True, "")


@pytest.mark.parametrize("text", INVALID.values(), ids=INVALID.keys())
def test_both_refuse(folder: Path, request: pytest.FixtureRequest, text: str) -> None:
    path = write(folder, request.node.callspec.id, text)
    accepted, said = promtool(path)
    assert not accepted, f"promtool accepts it:\n{said}"
    accepted, said = wsmon(path)
    assert not accepted
    assert said.startswith(f"{path}: ")


@pytest.mark.parametrize("text", WSMON_STRICTER.values(), ids=WSMON_STRICTER.keys())
def test_only_wsmon_refuses(folder: Path, request: pytest.FixtureRequest, text: str) -> None:
    path = write(folder, request.node.callspec.id, text)
    assert promtool(path)[0], "promtool refuses it too: move the case to INVALID"
    assert not wsmon(path)[0]


def test_hash_password_output_passes_promtool(folder: Path) -> None:
    """The installed `wsmon auth hash-password`, fed on a pipe as an operator would."""
    hashed = subprocess.run(
        [str(WSMON), "auth", "hash-password", "--cost", "4"],
        input="s3cret password\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    path = write(folder, "hashed", f"basic_auth_users:\n  prometheus: '{hashed}'")
    assert promtool(path) == (True, f"{path} SUCCESS\n")
    config = webconfig.load(path)
    assert config.check("Basic " + base64.b64encode(b"prometheus:s3cret password").decode())
    assert not config.check("Basic " + base64.b64encode(b"prometheus:s3cret").decode())
