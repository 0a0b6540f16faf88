"""MkDocs hook: Sphinx cross-reference roles in docstrings read as plain code.

The docstrings use Sphinx roles (``:class:`Worker```, ``:meth:`~Worker.run```),
which mkdocstrings renders literally, as ``:class:<code>Worker</code>``. This
drops the role and, for a ``~`` target, keeps only the last dotted part, as
Sphinx shows it.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(
    r":(?:class|meth|func|mod|attr|data|exc|obj):<code>(?P<tilde>~?)(?P<target>[^<]+)</code>"
)


def _plain(match: re.Match[str]) -> str:
    target = match["target"]
    if match["tilde"]:
        target = target.rsplit(".", 1)[-1]
    return f"<code>{target}</code>"


def on_page_content(html: str, **_: Any) -> str:
    """Rewrite every rendered role of the page."""
    return _ROLE.sub(_plain, html)
