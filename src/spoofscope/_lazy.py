"""Public names of a package imported on first use (PEP 562), so that ``import spoofscope`` and
``spoofscope --help`` do not load PyTorch, SciPy or ONNX Runtime."""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, modules: dict[str, list[str]]):
    """``(__getattr__, __dir__)`` for ``package``: each name of ``modules[".sub"]`` is taken
    from ``package.sub`` when first asked for, then kept on the package. A sub-module is
    imported when asked for as an attribute (``spoofscope.models.get_card``), as it was
    found when the package imported its sub-modules eagerly."""
    where = {name: mod for mod, names in modules.items() for name in names}

    def __getattr__(name: str):  # noqa: N807
        if name not in where:
            if not name.startswith("__"):  # dunders are asked for by tools (pydoc, copy)
                try:
                    return importlib.import_module(f"{package}.{name}")
                except ModuleNotFoundError as e:
                    if e.name != f"{package}.{name}":
                        raise  # the sub-module exists; something it imports does not
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():  # noqa: N807
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__
