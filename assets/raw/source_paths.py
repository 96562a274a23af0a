"""Where a file source may read from: the project, the allow-listed data roots, or (opt-in) anywhere.

A use-case YAML is input like any other: ``path: ../../../../etc/passwd`` used to be read, and
its first line came back in the error as "the file's columns". A table's path (and its
``group_file``) must now lie under one of:

- the YAML file's own folder;
- the project folder: the folder holding the ``configs/`` folder the YAML is in
  (``project/configs/movies.yaml`` may read ``project/data/...``);
- a folder listed in ``$PLAYBOOK_DATA_ROOTS`` (``os.pathsep``-separated, so ``:`` on Linux).

Paths are compared after resolving ``..`` and symlinks, so a symlink that leads out of the roots
is outside too. A remote or chained fsspec URL (``s3://``, ``simplecache::file://``) is outside
by definition. ``source.allow_outside_project: true`` in the YAML lifts the rule.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from configs.schema.source import FileTable

DATA_ROOTS_ENV = "PLAYBOOK_DATA_ROOTS"
_MAGIC = re.compile(r"[*?\[]")
_LOCAL_PROTOCOLS = ("file://", "local://")


class OutsideRootsError(ValueError):
    """A path a YAML names lies outside every allowed root; ``field`` is the FileTable field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def data_roots() -> list[Path]:
    """The folders listed in ``$PLAYBOOK_DATA_ROOTS``, resolved (relative ones against the cwd)."""
    listed = os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep)
    return [Path(entry).expanduser().resolve() for entry in listed if entry.strip()]


def project_roots(base_dir: Path) -> list[Path]:
    """The YAML's folder and, when it sits in a ``configs/`` folder, the folder above that."""
    here = Path(base_dir).absolute()
    roots = [here]
    for folder in (here, *here.parents):
        if folder.name == "configs":
            roots.append(folder.parent)
            break
    return [root.resolve() for root in roots]


def _fixed_part(pattern: str) -> Path:
    """The folders of a glob before its first wildcard: everything a match can lie under."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if _MAGIC.search(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def local_path(pattern: str) -> str | None:
    """The local path a table path reads, or None when it is a remote or chained URL."""
    for protocol in _LOCAL_PROTOCOLS:
        if pattern.startswith(protocol) and "::" not in pattern:
            return pattern[len(protocol) :]
    return None if "://" in pattern or "::" in pattern else pattern


class Roots:
    """The allowed roots for one table; ``check`` raises ``OutsideRootsError`` for a path outside."""

    def __init__(self, table: FileTable, base_dir: Path) -> None:
        self.anywhere = table.outside_project_allowed
        self.project = project_roots(base_dir)
        self.data = data_roots()

    def _refuse(self, field: str, what: str) -> OutsideRootsError:
        project = ", ".join(str(root) for root in self.project)
        data = os.pathsep.join(str(root) for root in self.data) or "unset"
        return OutsideRootsError(
            field,
            f"{what}, outside the project ({project}) and the data roots "
            f"(${DATA_ROOTS_ENV}: {data}); expected a path under one of them: move the data, "
            f"add its folder to ${DATA_ROOTS_ENV} ({os.pathsep!r}-separated) or set "
            "source.allow_outside_project: true",
        )

    def _inside(self, path: Path) -> bool:
        real = path.resolve()
        return any(real.is_relative_to(root) for root in (*self.project, *self.data))

    def check_pattern(self, field: str, pattern: str) -> None:
        """Before globbing: the URL is local and the glob's fixed folders are inside a root."""
        if self.anywhere:
            return
        local = local_path(pattern)
        if local is None:
            raise self._refuse(field, f"{pattern} is a remote or chained URL")
        fixed = _fixed_part(local)
        if not self._inside(fixed):
            raise self._refuse(field, f"resolves to {fixed.resolve()}")

    def check_files(self, field: str, paths: Iterable[str]) -> None:
        """After globbing: every match, symlinks followed, is inside a root."""
        if self.anywhere:
            return
        for path in paths:
            local = local_path(path)
            if local is None or not self._inside(Path(local)):
                shown = path if local is None else Path(local).resolve()
                raise self._refuse(field, f"resolves to {shown}")
