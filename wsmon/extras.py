"""The optional parts of a wsmon install, and the message for a command whose part is missing.

`pip install wsmon` is the server; `wsmon[loadtest]` adds the load generator's client libraries and
`wsmon[alerting]` the Jsonnet build. A command that needs one of them says which extra to install
instead of failing on an import deep inside.
"""

from __future__ import annotations

import importlib.util
from typing import Final

# The modules each extra installs.
EXTRA_MODULES: Final = {
    "loadtest": ("websockets", "hdrh"),
    "alerting": ("_jsonnet", "ruamel.yaml"),
    "stack": ("_jsonnet", "aiosmtpd"),
}


def missing_module(extra: str) -> str | None:
    """The first module of `extra` that is not installed, if any (looked up, not imported)."""
    for name in EXTRA_MODULES[extra]:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ValueError:  # in sys.modules as None: blocked on purpose
            return name
    return None


def problem(extra: str | None, command: str) -> str | None:
    """Why `command` cannot run on this install, or None when it can."""
    missing = None if extra is None else missing_module(extra)
    if extra is None or missing is None:
        return None
    return (
        f"`{command}` needs {missing!r}, which comes with the {extra!r} extra:"
        f" pip install 'wsmon[{extra}]'"
    )
