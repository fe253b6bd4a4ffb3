"""The package's own description matches the package."""

from __future__ import annotations

import pkgutil

import mmbook


def test_the_package_docstring_lists_every_module():
    modules = {info.name for info in pkgutil.iter_modules(mmbook.__path__) if not info.name.startswith("_")}
    listed = {name for name in modules if f":mod:`mmbook.{name}`" in mmbook.__doc__}
    assert listed == modules, f"not described in mmbook/__init__.py: {sorted(modules - listed)}"
