"""Token verification (exporter/auth.py): JWTs of three algorithms, and the static tokens file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wsmon.exporter import auth

SECRET = b"0123456789abcdef0123456789abcdef-test-only"


def hs256_signed(payload: bytes, key: bytes) -> str:
    """A JWT signed with HMAC-SHA256 by hand: PyJWT itself refuses a public key as the secret."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(payload)
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + part(signature)


def claims(**more: Any) -> dict[str, Any]:
    # A day: the parametrized tokens are made at collection, minutes before a long run uses them.
    return {"sub": "alice", "exp": int(time.time()) + 86_400, "roles": ["user"], **more}


@pytest.fixture
def hs256(tmp_path: Path) -> auth.JwtVerifier:
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    return auth.JwtVerifier.from_secret_file(tmp_path / "secret")


def test_an_hs256_token_names_its_user_roles_and_prefixes(hs256: auth.JwtVerifier) -> None:
    token = jwt.encode(claims(roles=["admin"], rooms=["team-"], topics="news."), SECRET, "HS256")
    who = hs256.verify(token)
    assert (who.user, who.admin, who.rooms, who.topics) == ("alice", True, ("team-",), ("news.",))
    assert who.may_join("team-blue")
    assert not who.may_join("other")
    assert who.may_use_topic("news.eu")
    assert not who.may_use_topic("sports")
    unrestricted = hs256.verify(jwt.encode(claims(), SECRET, "HS256"))
    assert unrestricted.may_join("anything")
    assert not unrestricted.admin


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (jwt.encode(claims(exp=int(time.time()) - 60), SECRET, "HS256"), "expired"),
        (jwt.encode(claims(), b"another secret, also 32 bytes long!!", "HS256"), "invalid"),
        (jwt.encode({"sub": "alice"}, SECRET, "HS256"), "invalid"),  # no expiry
        (jwt.encode(claims(roles="admin"), SECRET, "HS256"), "invalid"),  # roles not a list
        (jwt.encode(claims(), None, "none"), "invalid"),  # unsigned
        ("not.a.token", "invalid"),
    ],
)
def test_a_bad_token_is_refused_with_its_reason(
    hs256: auth.JwtVerifier, token: str, reason: str
) -> None:
    with pytest.raises(auth.AuthError) as refused:
        hs256.verify(token)
    assert refused.value.reason == reason
    assert token not in str(refused.value), "a token never goes into a message"


def test_a_short_secret_and_an_unreadable_file_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "short").write_text("too short")
    with pytest.raises(auth.AuthConfigError, match="at least 32 bytes"):
        auth.JwtVerifier.from_secret_file(tmp_path / "short")
    with pytest.raises(auth.AuthConfigError, match="cannot read it"):
        auth.JwtVerifier.from_secret_file(tmp_path / "missing")


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_a_public_key_picks_its_algorithm_and_refuses_hs256_with_it(
    tmp_path: Path, kind: str
) -> None:
    private = (
        rsa.generate_private_key(65537, 2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "key.pem").write_bytes(pem)
    verifier = auth.JwtVerifier.from_public_key_file(tmp_path / "key.pem")
    algorithm = "RS256" if kind == "rsa" else "ES256"
    assert verifier.algorithm == algorithm
    assert verifier.verify(jwt.encode(claims(), private, algorithm)).user == "alice"
    # The key's text used as an HMAC secret (the classic algorithm confusion) is refused.
    forged = hs256_signed(b'{"sub":"mallory","exp":9999999999}', pem)
    with pytest.raises(auth.AuthError):
        verifier.verify(forged)


def test_the_tokens_file_holds_digests_and_expiries(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    digest = hashlib.sha256(b"s3cret-token").hexdigest()
    old = hashlib.sha256(b"old-token").hexdigest()
    path.write_text(
        f"- {{sha256: {digest}, user: bob, roles: [admin]}}\n"
        f"- {{sha256: {old}, user: eve, expires: 2020-01-01T00:00:00Z}}\n"
    )
    verifier = auth.TokenFileVerifier.from_file(path)
    assert verifier.verify("s3cret-token").admin
    with pytest.raises(auth.AuthError, match="expired"):
        verifier.verify("old-token")
    with pytest.raises(auth.AuthError, match="not listed"):
        verifier.verify("guess")
    path.write_text("- {sha256: abc, user: bob}\n")
    with pytest.raises(auth.AuthConfigError, match="entry 1: sha256 must be"):
        auth.TokenFileVerifier.from_file(path)


def test_the_token_comes_from_the_bearer_header_or_the_subprotocols() -> None:
    assert auth.token_from("Bearer abc.def", []) == "abc.def"
    assert auth.token_from(None, ["wsmon.bearer", "abc.def"]) == "abc.def"
    assert auth.token_from("Basic Zm9v", ["chat"]) is None
    assert auth.token_from(None, ["wsmon.bearer"]) is None


def test_a_request_may_carry_the_token_as_a_basic_password() -> None:
    basic = base64.b64encode(b"anyone:abc.def").decode()
    assert auth.token_from(f"Basic {basic}") == "abc.def"
    assert auth.token_from("Bearer abc.def") == "abc.def"
    assert auth.token_from("Basic !!not base64!!") is None
    assert auth.token_from(f"Basic {base64.b64encode(b'no-colon').decode()}") is None
    assert auth.token_from(None) is None
