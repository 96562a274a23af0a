"""Old module paths of pickled objects, so homes written before a move still load.

A pickle names the module of every class it holds. Serving bundles and MLflow models written
before the runtime layer existed name ``serving.models.*`` (the served model objects) and
``resources.mlflow_registry`` (the pyfunc wrapper); those modules now live in ``runtime``. Rather
than keep stub modules at the old paths, :func:`install` adds an import hook that answers for
the old paths alone (none of which exists any more): each imports as the very module it moved
to, so unpickled objects are instances of today's classes, not of a second copy. Loaders of pickles (``runtime.bundle.load_bundle``, the MLflow
resource) install it before unpickling; the next training run re-registers under the new paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
from types import ModuleType

# old module -> new module; a package entry covers its submodules (``serving.models.ranker``)
MOVED: dict[str, str] = {
    "serving.models": "runtime.models",
    "serving.ann_index": "runtime.ann_index",
    "serving.bundle": "runtime.bundle",
    "serving.routing": "runtime.routing",
    "serving.postprocess": "runtime.postprocess",
    "serving.request_log": "runtime.request_log",
    "serving.online_features": "runtime.online_features",
    "resources.online_read": "runtime.online_read",
    "resources.mlflow_registry": "runtime.pyfunc",
}
_LOCK = threading.Lock()


def new_name(old: str) -> str | None:
    """The module an old path moved to, or None when it did not move."""
    for before, after in MOVED.items():
        if old == before or old.startswith(before + "."):
            return after + old[len(before) :]
    return None


class _Alias(importlib.abc.Loader):
    """Loads an old name as the already-imported new module."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run; the import system stamped the alias spec on the shared module, so
        its own spec is put back."""
        module.__spec__ = self._spec


class MovedModules(importlib.abc.MetaPathFinder):
    """Resolves a moved module's old name to its new module; first on ``sys.meta_path``, so a
    submodule of a moved package (``serving.models.ranker``) is not found a second time by the
    path finder under its old name."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        moved = new_name(fullname)
        if moved is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(moved))


def install() -> None:
    """Add the finder once per process (idempotent, thread-safe)."""
    with _LOCK:
        if not any(isinstance(f, MovedModules) for f in sys.meta_path):
            sys.meta_path.insert(0, MovedModules())
