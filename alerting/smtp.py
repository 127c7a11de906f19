"""SMTP settings for the Alertmanager config, from `WSMON_SMTP_*` variables at render time.

Alertmanager 0.25 does not expand environment variables in its config file, so the values are
written into the rendered alertmanager.yml, except the password: Alertmanager reads that itself
from WSMON_SMTP_PASSWORD_FILE (`auth_password_file`), so no secret is ever in a rendered file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

PREFIX: Final = "WSMON_SMTP_"
# variable suffix -> field of the mixin's _config.smtp
_FIELDS: Final = {
    "SMARTHOST": "smarthost",
    "FROM": "from",
    "WARNING_TO": "warningTo",
    "CRITICAL_TO": "criticalTo",
    "USERNAME": "username",
    "PASSWORD_FILE": "passwordFile",
}
KNOWN: Final = (*_FIELDS, "TO", "REQUIRE_TLS")
_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("0", "false", "no", "off")


class SmtpSettingsError(ValueError):
    """A WSMON_SMTP_* variable is missing, unknown or has a bad value."""


def _unknown(name: str) -> str:
    if name == "PASSWORD":
        return (
            f"{PREFIX}PASSWORD: a password is never put in the config; write it to a file "
            f"Alertmanager can read and set {PREFIX}PASSWORD_FILE"
        )
    return f"{PREFIX}{name}: unknown variable; known: {', '.join(PREFIX + k for k in KNOWN)}"


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The `smtp` override of the mixin config; every problem named by its variable."""
    given = {key[len(PREFIX) :]: value for key, value in environ.items() if key.startswith(PREFIX)}
    problems = [_unknown(name) for name in given if name not in KNOWN]
    smtp: dict[str, Any] = {
        field: given[name].strip() for name, field in _FIELDS.items() if given.get(name, "").strip()
    }
    for field in ("warningTo", "criticalTo"):
        if field not in smtp and given.get("TO", "").strip():
            smtp[field] = given["TO"].strip()
    for name, field in (("SMARTHOST", "smarthost"), ("FROM", "from")):
        if field not in smtp:
            problems.append(f"{PREFIX}{name}: not set")
    if "warningTo" not in smtp or "criticalTo" not in smtp:
        problems.append(f"{PREFIX}TO: not set (nor both {PREFIX}WARNING_TO and CRITICAL_TO)")
    if "smarthost" in smtp and ":" not in smtp["smarthost"]:
        problems.append(f"{PREFIX}SMARTHOST: must be host:port, got {smtp['smarthost']!r}")
    if "username" in smtp and "passwordFile" not in smtp:
        problems.append(f"{PREFIX}PASSWORD_FILE: not set, but {PREFIX}USERNAME is")
    # No username means a relay that takes mail without logging in: no auth fields at all.
    smtp.setdefault("username", "")
    tls = given.get("REQUIRE_TLS", "true").strip().lower()
    if tls not in _TRUE + _FALSE:
        problems.append(f"{PREFIX}REQUIRE_TLS: must be true or false, got {tls!r}")
    smtp["requireTls"] = tls in _TRUE
    if problems:
        raise SmtpSettingsError("\n".join(problems))
    return smtp
