"""An import-linter contract of our own: no private name crosses a module boundary.

Import-linter's built-in contracts see modules, not names, so ``from serving.ann_index import
_apply_params`` passed every layer check while tying a stage to another package's internals.
This contract reads each module of the root packages with ``ast`` and reports every ``from X
import _name`` (or any import of a private module X) where X is another of our modules: a name
used by two modules is public, and says so by its spelling. Dunder names are public. ``lint-imports`` loads it through ``contract_types`` in ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


@dataclass(frozen=True)
class PrivateImport:
    importer: str
    imported: str
    name: str
    line: int


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(module: str, roots: tuple[str, ...]) -> list[PrivateImport]:
    """Private names ``module`` imports from another module of ``roots``."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return []
    with open(spec.origin, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), spec.origin)
    own = module if spec.submodule_search_locations is not None else None
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        source = node.module
        if source.split(".")[0] not in roots:
            continue
        if source == own:  # a package's __init__ reading its own modules' names
            continue
        for alias in node.names:
            if _is_private(alias.name) or _is_private(source.rpartition(".")[2]):
                found.append(PrivateImport(module, source, alias.name, node.lineno))
    return found


class PrivateNamesContract(Contract):
    """Modules of ``source_packages`` import no private name from another module."""

    type_name = "private_names"
    source_packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        roots = tuple(self.source_packages)  # type: ignore[arg-type]
        modules = sorted(
            m for m in graph.modules if m.split(".")[0] in roots and not m.startswith("tests.")
        )
        found = [hit for module in modules for hit in private_imports(module, roots)]
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for hit in check.metadata["found"]:
            output.print_error(
                f"{hit.importer}:{hit.line} imports private {hit.name!r} from {hit.imported}",
                bold=False,
            )
        output.new_line()
        output.print("Make the name public in its module, or move the code to where it is used.")
