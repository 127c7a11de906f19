"""/metrics and the health endpoints on a second address (`--metrics-listen`), behind TLS and
basic auth from a Prometheus web config file: absent from the public port, 401 without the right
password, and scraped by a real Prometheus whose scrape config says `basic_auth` and `tls_config`
and nothing wsmon-specific."""

from __future__ import annotations

import base64
import json
import re
import ssl
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import bcrypt
import pytest
import yaml
from support.metrics import Metrics
from support.polling import wait_until
from support.stack import Stack, prometheus_config
from support.tls import Pki, make_pki

if TYPE_CHECKING:
    from conftest import ServerFactory, WsmonServer

pytestmark = pytest.mark.integration

PASSWORD = "scrape-password-for-tests"
OPERATIONS_LINE = re.compile(r"/metrics and the health endpoints on (https?)://127\.0\.0\.1:(\d+)")
OPERATIONS = ("/metrics", "/healthz", "/readyz", "/probe")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def protected(wsmon: ServerFactory, tmp_path: Path, pki: Pki) -> tuple[WsmonServer, str]:
    """wsmon with its operations on https://127.0.0.1:PORT, user `prometheus`; and that URL."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": str(pki.cert), "key_file": str(pki.key)},
                "basic_auth_users": {"prometheus": hashed},
            }
        )
    )
    server = wsmon("--metrics-listen", "127.0.0.1:0", "--metrics-web-config-file", str(web))
    found = server.service.wait_for(OPERATIONS_LINE, 10)
    assert found is not None, server.log
    assert found.group(1) == "https"
    return server, f"https://127.0.0.1:{found.group(2)}"


def basic(user: str, password: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


RIGHT = basic("prometheus", PASSWORD)


async def fetch(
    url: str, pki: Pki, headers: dict[str, str] | None = None
) -> tuple[int, str, str | None]:
    """GET over TLS trusting the test CA: (status, body, WWW-Authenticate)."""
    trust = ssl.create_default_context(cafile=str(pki.ca))
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(url, headers=headers, ssl=trust) as response,
    ):
        challenge = response.headers.get("WWW-Authenticate")
        return response.status, await response.text(), challenge


async def test_the_operations_are_on_the_second_address_only(
    protected: tuple[WsmonServer, str], pki: Pki
) -> None:
    server, operations = protected
    for path in OPERATIONS:
        status, _, _ = await server.get(path)
        assert status == 404, f"{path} is still on the public port"
    client = await server.connect()  # the public port serves WebSockets as before
    await client.close()
    status, _, _ = await server.get("/api/health")
    assert status == 200
    status, text, _ = await fetch(f"{operations}/metrics", pki, RIGHT)
    assert status == 200
    assert Metrics.parse(text).total("wsmon_connections_opened_total") >= 1
    for path in ("/healthz", "/readyz"):
        assert (await fetch(operations + path, pki, RIGHT))[0] == 200
    # The basic auth user may run the probe (a scrape sends one Authorization header).
    status, text, _ = await fetch(f"{operations}/probe?module=echo", pki, RIGHT)
    assert status == 200, text
    assert Metrics.parse(text).value("wsmon_probe_success", probe="echo") == 1, text


@pytest.mark.parametrize(
    "headers",
    [None, basic("prometheus", "wrong"), basic("nobody", PASSWORD)],
    ids=["none", "wrong password", "unknown user"],
)
async def test_a_scrape_without_the_right_password_is_refused_with_401(
    protected: tuple[WsmonServer, str], pki: Pki, headers: dict[str, str] | None
) -> None:
    _, operations = protected
    for path in OPERATIONS:
        status, _, challenge = await fetch(operations + path, pki, headers)
        assert (status, challenge) == (401, 'Basic realm="wsmon"'), path


async def test_plain_http_on_the_tls_port_gets_no_metrics(
    protected: tuple[WsmonServer, str],
) -> None:
    _, operations = protected
    plain = operations.replace("https://", "http://")
    with pytest.raises(aiohttp.ClientError):
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"{plain}/metrics") as response,
        ):
            assert response.status != 200


def test_prometheus_scrapes_it_with_basic_auth_and_tls(
    protected: tuple[WsmonServer, str], pki: Pki, tmp_path: Path
) -> None:
    """The scrape config is Prometheus' own: scheme https, basic_auth with a password file,
    tls_config with the CA; up is 1 and wsmon's series arrive."""
    _, operations = protected
    target = urllib.parse.urlsplit(operations).netloc
    config = prometheus_config(tmp_path / "prometheus.yml", {"wsmon": target}, interval="1s")
    document = yaml.safe_load(config.read_text())
    password = tmp_path / "wsmon.password"
    password.write_text(PASSWORD + "\n")
    document["scrape_configs"][0].update(
        {
            "scheme": "https",
            "basic_auth": {"username": "prometheus", "password_file": str(password)},
            "tls_config": {"ca_file": str(pki.ca)},
        }
    )
    config.write_text(yaml.safe_dump(document))
    stack = Stack()
    try:
        _, url = stack.prometheus(config, tmp_path / "data")
        up = _scraped(url)
    finally:
        stack.stop_all()
    assert up[0]["value"][1] == "1"  # type: ignore[index]


def _scraped(url: str) -> list[dict[str, object]]:
    """`up` for the job once it is 1, after checking wsmon's own series came with it."""

    def query(expression: str) -> list[dict[str, object]]:
        params = urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(f"{url}/api/v1/query?{params}", timeout=5) as response:
            result: list[dict[str, object]] = json.load(response)["data"]["result"]
            return result

    up = wait_until(
        lambda: query('up{job="wsmon"}'),
        lambda r: bool(r) and r[0]["value"][1] == "1",  # type: ignore[index]
        within=30,
        what="Prometheus scraping the operations port",
    )
    assert query('wsmon_workers_alive{job="wsmon"}')[0]["value"][1] == "2"  # type: ignore[index]
    return up
