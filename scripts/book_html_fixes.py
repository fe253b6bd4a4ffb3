"""A Sphinx extension for the book's HTML: each script once per page.

With Sphinx 7.4, a script given only as inline code (``app.add_js_file(None, body=...)``)
reaches a page twice, once with the file name ``None`` and once with ``""``. For
sphinx-thebe's ``const THEBE_JS_URL = ...`` the second copy is a JavaScript error in every
page's console ("Identifier 'THEBE_JS_URL' has already been declared"). This drops the
second copy of every script.
"""

from __future__ import annotations

from typing import Any


def _key(script: Any) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    return (getattr(script, "filename", script) or "", tuple(sorted((k, str(v)) for k, v in attributes.items())))


def drop_duplicate_scripts(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
