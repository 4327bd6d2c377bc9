"""Each package re-exports its public names with a complete, sorted ``__all__``."""

from __future__ import annotations

import importlib
import inspect

import pytest

PACKAGES = [
    "prodloop",
    "prodloop.annotation",
    "prodloop.capture",
    "prodloop.datasets",
    "prodloop.store",
    "prodloop.server",
    "prodloop.errors",
    "prodloop.cli",
    "prodloop.jobs",
    "prodloop.monitoring",
    "prodloop.embeddings",
    "prodloop.demo",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names {item!r}, which the module lacks"
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and not inspect.ismodule(value)
        and getattr(value, "__module__", name).startswith("prodloop")
        and attr not in {"annotations", "Any"}
    }
    missing = public - set(exported) - {"TYPE_CHECKING"}
    assert not missing, f"{name} has public names missing from __all__: {sorted(missing)}"
