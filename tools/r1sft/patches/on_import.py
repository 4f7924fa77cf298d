"""Call a function on a module as soon as it has been imported: an import hook, so installing a patch imports
nothing (LLaMA-Factory's modules are heavy, and a patch must not change what a process imports or when)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from types import ModuleType


class CallOnImport(importlib.abc.MetaPathFinder):
    """Finds module ``name`` like the path finder does, and calls ``callback(module)`` once it has run."""

    def __init__(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        self.name, self.callback = name, callback

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        exec_module, callback = spec.loader.exec_module, self.callback

        def exec_and_call(module):
            exec_module(module)
            callback(module)

        spec.loader.exec_module = exec_and_call
        return spec


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> CallOnImport | None:
    """``callback(module)`` now if ``name`` is imported, else when it is; returns the hook to ``remove`` (or None)."""
    if name in sys.modules:
        callback(sys.modules[name])
        return None
    finder = CallOnImport(name, callback)
    sys.meta_path.insert(0, finder)
    return finder


def remove(finder: CallOnImport | None) -> None:
    if finder is not None and finder in sys.meta_path:
        sys.meta_path.remove(finder)
