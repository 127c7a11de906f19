"""The web config file (exporter/webconfig.py): what loads, what is refused and why, basic auth
with its cache, the middleware's answers, and TLS served for real on 127.0.0.1."""

from __future__ import annotations

import base64
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import bcrypt
import pytest
from aiohttp import web
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from support.tls import Pki, make_pki

from wsmon.cli import main
from wsmon.exporter import webconfig
from wsmon.exporter.webconfig import WebConfigError

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient

    Client = TestClient[web.Request, web.Application]
    MakeClient = Callable[..., Awaitable[Client]]

PASSWORD = "correct horse"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()  # cost 4: ~1 ms a check


# -- certificates ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write(folder: Path, text: str, name: str = "web.yml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def tls_section(pki: Pki, *lines: str) -> str:
    return "\n  ".join(
        ["tls_server_config:", f"cert_file: {pki.cert}", f"key_file: {pki.key}", *lines]
    )


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- loading ---------------------------------------------------------------------------------------


def test_an_empty_file_asks_for_nothing(tmp_path: Path) -> None:
    config = webconfig.load(write(tmp_path, ""))
    assert config.ssl_context() is None
    assert not config.basic_auth
    assert config.check(None)
    assert dict(config.headers) == {}


def test_a_full_file_loads(tmp_path: Path, pki: Pki) -> None:
    config = webconfig.load(
        write(
            tmp_path,
            tls_section(
                pki,
                "client_auth_type: RequireAndVerifyClientCert",
                f"client_ca_file: {pki.ca}",
                "min_version: TLS13",
                "prefer_server_cipher_suites: false",
            )
            + f"""
http_server_config:
  http2: true
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Content-Security-Policy: "default-src 'none'"
    X-XSS-Protection: 0
    Strict-Transport-Security: ""
basic_auth_users:
  prometheus: '{HASH}'
  alice: '{HASH.replace("$2b$", "$2y$")}'
""",
        )
    )
    context = config.ssl_context()
    assert context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.minimum_version is ssl.TLSVersion.TLSv1_3
    assert context.maximum_version is ssl.TLSVersion.TLSv1_3
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert config.basic_auth
    assert dict(config.headers) == {  # a blank value is not set
        "X-Frame-Options": "deny",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'",
        "X-XSS-Protection": "0",  # a number is its text, as in Go's YAML
    }
    assert config.check(basic("alice", PASSWORD))  # $2y$ (htpasswd's) is bcrypt too


def test_tls_defaults_are_the_toolkits(tmp_path: Path, pki: Pki) -> None:
    context = webconfig.load(write(tmp_path, tls_section(pki))).ssl_context()
    assert context is not None
    assert context.verify_mode is ssl.CERT_NONE
    assert (context.minimum_version, context.maximum_version) == (
        ssl.TLSVersion.TLSv1_2,
        ssl.TLSVersion.TLSv1_3,
    )
    assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE


def test_relative_paths_are_from_the_files_folder(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the toolkit does: the file works wherever the server was started from."""
    text = f"tls_server_config:\n  cert_file: {pki.cert.name}\n  key_file: {pki.key.name}\n"
    path = write(pki.cert.parent, text, "relative.yml")
    monkeypatch.chdir(tmp_path)
    assert webconfig.load(path).ssl_context() is not None


BAD_FILES = {
    "unknown top-level key": (
        "basic_auth_user: {}",
        "basic_auth_user: unknown key (did you mean 'basic_auth_users'?)",
    ),
    "unknown nested key": (
        "tls_server_config: {cert_fil: x}",
        "tls_server_config.cert_fil: unknown key (did you mean 'cert_file'?)",
    ),
    "missing key_file": (
        "tls_server_config: {cert_file: {cert}}",
        "tls_server_config.key_file: missing",
    ),
    "missing cert_file": (
        "tls_server_config: {key_file: {key}, min_version: TLS13}",
        "tls_server_config.cert_file: missing",
    ),
    "no such cert": (
        "tls_server_config: {cert_file: /nonexistent/cert.pem, key_file: {key}}",
        "tls_server_config.cert_file: no such file /nonexistent/cert.pem",
    ),
    "key not the cert's": (
        "tls_server_config: {cert_file: {cert}, key_file: {other_key}}",
        "tls_server_config.cert_file: cannot load",
    ),
    "bad client_auth_type": (
        "tls_server_config: {cert_file: {cert}, key_file: {key}, client_auth_type: Verify}",
        "tls_server_config.client_auth_type: unknown 'Verify'",
    ),
    "unverified client certificates": (
        "tls_server_config: {cert_file: {cert}, key_file: {key},"
        " client_auth_type: RequireAnyClientCert, client_ca_file: {ca}}",
        "tls_server_config.client_auth_type: RequireAnyClientCert is not supported by wsmon",
    ),
    "verifying without a CA": (
        "tls_server_config: {cert_file: {cert}, key_file: {key},"
        " client_auth_type: VerifyClientCertIfGiven}",
        "tls_server_config.client_ca_file: required with VerifyClientCertIfGiven",
    ),
    "a CA and no client auth": (
        "tls_server_config: {cert_file: {cert}, key_file: {key}, client_ca_file: {ca}}",
        "tls_server_config.client_auth_type: a client CA is configured",
    ),
    "a CA file without a certificate": (
        "tls_server_config: {cert_file: {cert}, key_file: {key},"
        " client_auth_type: RequireAndVerifyClientCert, client_ca_file: {key}}",
        "tls_server_config.client_ca_file: no CA certificate in it",
    ),
    "min_version above max_version": (
        "tls_server_config: {cert_file: {cert}, key_file: {key},"
        " min_version: TLS13, max_version: TLS12}",
        "tls_server_config.min_version: TLS13 is above max_version TLS12",
    ),
    "unknown TLS version": (
        "tls_server_config: {cert_file: {cert}, key_file: {key}, max_version: TLSv1.3}",
        "tls_server_config.max_version: unknown TLS version 'TLSv1.3'",
    ),
    "inline cert": (
        "tls_server_config: {cert: '-----BEGIN CERTIFICATE-----', key_file: {key}}",
        "tls_server_config.cert: not supported by wsmon: put the certificate in cert_file",
    ),
    "Go cipher names": (
        "tls_server_config: {cert_file: {cert}, key_file: {key},"
        " cipher_suites: [TLS_AES_128_GCM_SHA256]}",
        "tls_server_config.cipher_suites: not supported by wsmon (Python's ssl picks OpenSSL's",
    ),
    "Go curve names": (
        "tls_server_config: {cert_file: {cert}, key_file: {key}, curve_preferences: [X25519]}",
        "tls_server_config.curve_preferences: not supported by wsmon",
    ),
    "client SANs": (
        "tls_server_config: {cert_file: {cert}, key_file: {key}, client_allowed_sans: [a]}",
        "tls_server_config.client_allowed_sans: not supported by wsmon",
    ),
    "prefer_server_cipher_suites not a boolean": (
        "tls_server_config: {cert_file: {cert}, key_file: {key}, prefer_server_cipher_suites: 1}",
        "tls_server_config.prefer_server_cipher_suites: must be true or false",
    ),
    "http2 not a boolean": (
        "http_server_config: {http2: 'yes please'}",
        "http_server_config.http2: must be true or false",
    ),
    "a header the toolkit does not allow": (
        "http_server_config: {headers: {Server: wsmon}}",
        "http_server_config.headers.Server: this header cannot be configured",
    ),
    "a header in the wrong case": (
        "http_server_config: {headers: {x-frame-options: deny}}",
        "(did you mean 'X-Frame-Options'?)",
    ),
    "a header value the toolkit does not allow": (
        "http_server_config: {headers: {X-Frame-Options: allow-from}}",
        "http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin",
    ),
    "a header value on two lines": (
        'http_server_config: {headers: {Content-Security-Policy: "a\\nb"}}',
        "http_server_config.headers.Content-Security-Policy: must be one line",
    ),
    "a header value as a float": (
        "http_server_config: {headers: {X-XSS-Protection: 1.0}}",
        "http_server_config.headers.X-XSS-Protection: must be a string (quote it)",
    ),
    "rate_limit": ("rate_limit: {interval: 1s, burst: 5}", "rate_limit: not supported by wsmon"),
    "a plain password": (
        "basic_auth_users: {prometheus: 'hunter2-not-hashed'}",
        "basic_auth_users.prometheus: not a bcrypt hash",
    ),
    "a bcrypt cost below 4": (
        "basic_auth_users: {prometheus: '$2b$03$" + "a" * 53 + "'}",
        "basic_auth_users.prometheus: not a bcrypt hash",
    ),
    "a user without a hash": (
        "basic_auth_users: {prometheus: }",
        "basic_auth_users.prometheus: not a bcrypt hash",
    ),
    "users as a list": ("basic_auth_users: [prometheus]", "basic_auth_users: must be a mapping"),
    "not a mapping": ("- tls_server_config", "the file must be a mapping, got list"),
    "not YAML": ("tls_server_config: [", "not valid YAML at line"),
}


@pytest.mark.parametrize(("text", "expected"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_bad_file_is_refused_naming_the_key(
    tmp_path: Path, pki: Pki, text: str, expected: str
) -> None:
    for name, path in vars(pki).items():
        text = text.replace("{" + name + "}", str(path))
    path = write(tmp_path, text)
    with pytest.raises(WebConfigError) as refused:
        webconfig.load(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message
    assert "hunter2" not in message  # a value that is not a hash may be a password


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match="cannot read web config file: there is no such"):
        webconfig.load(tmp_path / "web.yml")


def test_an_encrypted_key_is_refused_without_a_prompt(tmp_path: Path, pki: Pki) -> None:
    key = serialization.load_pem_private_key(pki.key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    path = write(tmp_path, f"tls_server_config: {{cert_file: {pki.cert}, key_file: {encrypted}}}")
    with pytest.raises(WebConfigError, match=r"tls_server_config\.key_file: .* is encrypted"):
        webconfig.load(path)


# -- basic auth ------------------------------------------------------------------------------------


@pytest.fixture
def protected(tmp_path: Path) -> webconfig.WebConfig:
    return webconfig.load(write(tmp_path, f"basic_auth_users:\n  prometheus: '{HASH}'\n"))


@dataclass
class Spy:
    """bcrypt.checkpw, counted: the hashes it was asked to compare and on which threads."""

    hashes: list[bytes]
    threads: list[int]


@pytest.fixture
def checkpw(monkeypatch: pytest.MonkeyPatch) -> Spy:
    spy = Spy([], [])
    real = bcrypt.checkpw

    def counted(password: bytes, hashed: bytes) -> bool:
        spy.hashes.append(hashed)
        spy.threads.append(threading.get_ident())
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counted)
    return spy


@pytest.mark.parametrize(
    ("authorization", "allowed"),
    [
        (basic("prometheus", PASSWORD), True),
        ("basic " + basic("prometheus", PASSWORD).split()[1], True),  # the scheme is any case
        (basic("prometheus", PASSWORD + "!"), False),
        (basic("prometheus", ""), False),
        (basic("mallory", PASSWORD), False),
        (None, False),
        ("", False),
        ("Basic", False),
        ("Basic not*base64", False),
        ("Basic " + base64.b64encode(b"no colon").decode(), False),
        ("Basic " + base64.b64encode(b"\xff\xfe:" + PASSWORD.encode()).decode(), False),
        ("Bearer " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode(), False),
    ],
)
def test_check(protected: webconfig.WebConfig, authorization: str | None, allowed: bool) -> None:
    assert protected.check(authorization) is allowed


def test_the_second_right_check_costs_no_bcrypt(
    protected: webconfig.WebConfig, checkpw: Spy
) -> None:
    assert protected.check(basic("prometheus", PASSWORD))
    assert protected.check(basic("prometheus", PASSWORD))
    assert len(checkpw.hashes) == 1
    assert not protected.check(basic("prometheus", "wrong"))  # after a right one, still wrong
    assert not protected.check(basic("prometheus", "wrong"))
    assert protected.check(basic("prometheus", PASSWORD))
    assert len(checkpw.hashes) == 2


def test_an_unknown_user_costs_a_bcrypt_check_of_the_same_cost(
    protected: webconfig.WebConfig, checkpw: Spy
) -> None:
    """So that timing does not tell which users exist."""
    assert not protected.check(basic("mallory", PASSWORD))
    (dummy,) = checkpw.hashes
    assert dummy != HASH.encode()
    assert dummy[:7] == HASH.encode()[:7] == b"$2b$04$"


def test_the_cache_forgets_the_least_recently_used(
    protected: webconfig.WebConfig, checkpw: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webconfig, "CACHE_SIZE", 2)
    right = basic("prometheus", PASSWORD)
    for attempt in (right, basic("prometheus", "a"), right, basic("prometheus", "b")):
        protected.check(attempt)
    assert len(checkpw.hashes) == 3  # right was used again before b came: "a" went
    assert protected.check(right)
    assert len(checkpw.hashes) == 3
    protected.check(basic("prometheus", "a"))
    assert len(checkpw.hashes) == 4


def test_a_password_over_72_bytes_counts_its_first_72_as_bcrypt_does(tmp_path: Path) -> None:
    long = "x" * 72
    hashed = bcrypt.hashpw(long.encode(), bcrypt.gensalt(4)).decode()
    config = webconfig.load(write(tmp_path, f"basic_auth_users: {{u: '{hashed}'}}"))
    assert config.check(basic("u", long + "ignored"))
    assert not config.check(basic("u", long[:-1]))


async def test_check_async_runs_bcrypt_off_the_event_loop(
    protected: webconfig.WebConfig, checkpw: Spy
) -> None:
    assert await protected.check_async(basic("prometheus", PASSWORD))
    assert await protected.check_async(basic("prometheus", PASSWORD))  # cached: no thread
    assert not await protected.check_async(basic("mallory", PASSWORD))
    assert len(checkpw.threads) == 2
    assert threading.get_ident() not in checkpw.threads


# -- the middleware --------------------------------------------------------------------------------


def application(config: webconfig.WebConfig) -> web.Application:
    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application(middlewares=[config.middleware()])
    app.router.add_get("/metrics", hello)
    return app


HEADERS_FILE = f"""
http_server_config:
  headers: {{X-Content-Type-Options: nosniff, X-Frame-Options: deny}}
basic_auth_users:
  prometheus: '{HASH}'
"""


async def test_the_middleware_asks_for_credentials_and_adds_headers(
    aiohttp_client: MakeClient, tmp_path: Path
) -> None:
    client = await aiohttp_client(application(webconfig.load(write(tmp_path, HEADERS_FILE))))
    wrong = {"Authorization": basic("prometheus", "wrong")}
    right = {"Authorization": basic("prometheus", PASSWORD)}
    for headers in ({}, wrong):
        refused = await client.get("/metrics", headers=headers)
        assert refused.status == 401
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="wsmon"'
        assert (await refused.text()).startswith("401 Unauthorized")
        assert refused.headers["X-Frame-Options"] == "deny"
    answered = await client.get("/metrics", headers=right)
    assert (answered.status, await answered.text()) == (200, "hello")
    assert answered.headers["X-Content-Type-Options"] == "nosniff"
    assert "WWW-Authenticate" not in answered.headers
    missing = await client.get("/nothing-here", headers=right)
    assert missing.status == 404
    assert missing.headers["X-Frame-Options"] == "deny"


async def test_without_users_the_middleware_lets_everyone_in(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(application(webconfig.WebConfig()))
    assert (await client.get("/metrics")).status == 200


# -- TLS, served for real --------------------------------------------------------------------------


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[webconfig.WebConfig], Awaitable[str]]]:
    """Serve application(config) with its TLS context on 127.0.0.1; the base URL."""
    runners: list[web.AppRunner] = []

    async def start(config: webconfig.WebConfig) -> str:
        runner = web.AppRunner(application(config))
        runners.append(runner)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=config.ssl_context())
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"https://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def client_context(pki: Pki, *, certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca)
    if certificate:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


async def get(url: str, context: ssl.SSLContext, **kwargs: Any) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/metrics", ssl=context, **kwargs) as response,
    ):
        return response.status, await response.text()


async def test_https_with_basic_auth(
    serve: Callable[[webconfig.WebConfig], Awaitable[str]], tmp_path: Path, pki: Pki
) -> None:
    text = tls_section(pki) + f"\nbasic_auth_users: {{prometheus: '{HASH}'}}\n"
    url = await serve(webconfig.load(write(tmp_path, text)))
    context = client_context(pki, certificate=False)
    assert (await get(url, context))[0] == 401
    right = {"Authorization": basic("prometheus", PASSWORD)}
    assert await get(url, context, headers=right) == (200, "hello")


async def test_require_and_verify_client_cert_refuses_a_client_without_one(
    serve: Callable[[webconfig.WebConfig], Awaitable[str]], tmp_path: Path, pki: Pki
) -> None:
    text = tls_section(
        pki, "client_auth_type: RequireAndVerifyClientCert", f"client_ca_file: {pki.ca}"
    )
    url = await serve(webconfig.load(write(tmp_path, text)))
    with pytest.raises(aiohttp.ClientError):
        await get(url, client_context(pki, certificate=False))
    assert await get(url, client_context(pki, certificate=True)) == (200, "hello")


# -- wsmon auth hash-password ----------------------------------------------------------------------


def test_hash_password_prints_a_hash_of_the_password_on_stdin() -> None:
    result = CliRunner().invoke(main, ["auth", "hash-password", "--cost", "4"], input="s3cret\n")
    assert result.exit_code == 0, result.output
    hashed = result.output.strip()
    assert hashed.startswith("$2b$04$")
    assert bcrypt.checkpw(b"s3cret", hashed.encode())  # the newline is not part of it


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (["--cost", "3"], "s3cret", "4<=x<=31"),
        ([], "", "no password on standard input"),
        (["--cost", "4"], "x" * 73, "bcrypt takes at most 72"),
    ],
)
def test_hash_password_refuses(args: list[str], stdin: str, expected: str) -> None:
    result = CliRunner().invoke(main, ["auth", "hash-password", *args], input=stdin)
    assert result.exit_code == 2
    assert expected in result.output
