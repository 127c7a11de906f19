"""`wsmon auth token|hash-token`: issue a client's JWT, or list a static token by its digest."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

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
    """Tokens for a server that checks them (auth_jwt_secret_file, auth_tokens_file).

    \b
      wsmon auth token --secret-file /etc/wsmon/jwt.secret --user alice > alice.jwt
      wsmon auth token --secret-file /etc/wsmon/jwt.secret --user prometheus --role admin \\
          --expires 365d > /etc/prometheus/wsmon/probe.token
      wsmon auth token --secret-file jwt.secret --user bob --room team-blue- --topic news.
      head -c 32 /dev/urandom | base64 | tee bob.token | wsmon auth hash-token

    A token is a secret: it goes to a file or a pipe, never a command line.
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
