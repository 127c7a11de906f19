"""/runbooks: the alerting runbooks (alerting/runbooks.md) as one HTML page, served by wsmon itself.

Every alert's runbook_url points here by default (`http://INSTANCE/runbooks#alertname`), so the link
in an on-call email leads to a page that exists wherever wsmon runs. Each `## AlertName` heading
gets the lower-cased alert name as its id, the anchor the alert rules write. Rendered once, on the
first request: a worker that is never asked never loads the Markdown library.
"""

from __future__ import annotations

from functools import cache
from html import escape
from importlib.resources import files
from typing import Final

import markdown

# Packaged data of the alerting mixin, located without importing it.
SOURCE: Final = files("wsmon").joinpath("alerting", "runbooks.md")
STYLE: Final = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}"
    "pre{background:#f4f4f4;padding:.75rem;overflow-x:auto}code{font-size:.9em}"
    "h2{border-top:1px solid #ddd;padding-top:1.5rem}:target{background:#fff3b0}"
)


@cache
def page() -> bytes:
    text = SOURCE.read_text(encoding="utf-8")
    # toc's default slugify lower-cases a heading and keeps its word characters: `## WsmonX` has
    # the id `wsmonx`, as in runbook_url.
    body = markdown.markdown(text, extensions=["toc", "fenced_code", "tables"])
    title = escape(text.partition("\n")[0].lstrip("# ").strip() or "wsmon runbooks")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    ).encode()
