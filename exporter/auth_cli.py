"""`wsmon auth token|hash-token|hash-password`: issue a client's JWT, list a static token by its
digest, or hash a password for the web config file's basic_auth_users."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import bcrypt
import click
import jwt

from wsmon.thresholds import duration_seconds

from .auth import ADMIN, AuthConfigError, JwtVerifier


def _duration(_ctx: click.Context, _param: click.Parameter, text: str) -> float:
    try:
        return duration_seconds(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group()
def auth_group() -> None:
    """Tokens for a server that checks them (auth_jwt_secret_file, auth_tokens_file), and
    password hashes for the web config file's basic_auth_users (metrics_web_config_file).

    \b
      wsmon auth token --secret-file /etc/wsmon/jwt.secret --user alice > alice.jwt
      wsmon auth token --secret-file /etc/wsmon/jwt.secret --user prometheus --role admin \\
          --expires 365d > probe.token
      wsmon auth token --secret-file jwt.secret --user bob --room team-blue- --topic news.
      head -c 32 /dev/urandom | base64 | tee bob.token | wsmon auth hash-token
      wsmon auth hash-password < /etc/prometheus/wsmon/wsmon.password

    A token or a password is a secret: it goes to a file or a pipe, never a command line.
    """


@auth_group.command("token")
@click.option(
    "--secret-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="The HS256 secret the server's auth_jwt_secret_file names.",
)
@click.option("--user", required=True, help="Who the token is for (its `sub`).")
@click.option(
    "--role",
    "roles",
    multiple=True,
    help=f"A role; `{ADMIN}` may broadcast and use /probe and /testing. Repeatable.",
)
@click.option(
    "--room",
    "rooms",
    multiple=True,
    help="A room name prefix the user may join (repeatable; none given: any room).",
)
@click.option(
    "--topic",
    "topics",
    multiple=True,
    help="A topic name prefix the user may subscribe and publish to (none given: any).",
)
@click.option(
    "--expires",
    default="24h",
    show_default=True,
    callback=_duration,
    help="How long the token is valid: 30m, 24h, 30d. A connection is closed with 4001 then.",
)
@click.option("--audience", help="The `aud` the server's auth_audience expects, if it sets one.")
def token_command(
    secret_file: Path,
    user: str,
    roles: tuple[str, ...],
    rooms: tuple[str, ...],
    topics: tuple[str, ...],
    expires: float,
    audience: str | None,
) -> None:
    """Print a JWT for USER signed with the server's secret (HS256)."""
    try:
        verifier = JwtVerifier.from_secret_file(secret_file)
    except AuthConfigError as exc:
        raise click.ClickException(str(exc)) from None
    claims: dict[str, object] = {
        "sub": user,
        "roles": list(roles),
        "iat": int(time.time()),
        "exp": int(time.time() + expires),
    }
    if rooms:
        claims["rooms"] = list(rooms)
    if topics:
        claims["topics"] = list(topics)
    if audience:
        claims["aud"] = audience
    token = jwt.encode(claims, verifier.key, algorithm="HS256")
    # The same check the server makes: a token this prints is one it accepts.
    JwtVerifier(verifier.key, "HS256", audience).verify(token)
    click.echo(token)


@auth_group.command("hash-token")
def hash_token_command() -> None:
    """Read a token on standard input; print the `sha256:` line of auth_tokens_file for it."""
    token = sys.stdin.read().strip()
    if not token:
        raise click.UsageError("no token on standard input")
    click.echo(f"sha256: {hashlib.sha256(token.encode()).hexdigest()}")


@auth_group.command("hash-password")
@click.option(
    "--cost",
    type=click.IntRange(4, 31),
    default=12,
    show_default=True,
    help="bcrypt's work factor: each step doubles the time a check takes (12: about 250 ms).",
)
def hash_password_command(cost: int) -> None:
    """Print a bcrypt hash of a password, for basic_auth_users in the web config file.

    The password is read on standard input (one trailing newline dropped), or asked for twice,
    hidden, when standard input is a terminal.

    \b
      wsmon auth hash-password
      wsmon auth hash-password < prometheus.password
      # web.yml:  basic_auth_users: {prometheus: '<the hash it printed>'}
    """
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    secret = password.encode()
    if not secret:
        raise click.UsageError("no password on standard input")
    if len(secret) > 72:
        # bcrypt reads 72 bytes and no more: a longer password would seem stronger than it is.
        raise click.UsageError(f"the password is {len(secret)} bytes; bcrypt takes at most 72")
    click.echo(bcrypt.hashpw(secret, bcrypt.gensalt(cost)).decode())
