"""A home that can be moved: the absolute paths its stores keep, re-rooted where the home is now.

Most of what a home holds names other files by relative paths (the Feast ``feature_store.yaml``,
the repo's Python file, the serving bundle), but three stores record absolute ones and give no
way to do otherwise:

* MLflow resolves every local artifact location to an absolute URI when it creates it
  (experiments, runs, logged models, model versions; the MLmodel files repeat it), and the
  training set's dataset input names its Parquet file;
* Feast's DuckDB offline store reads a file source's ``path`` as given, relative to the working
  directory, so the registry keeps the feature tables' absolute paths;
* Dagster's event log records where each materialization wrote its table, and the assets that
  read files directly take the path from there.

So each of these stores keeps, beside itself, a small file (:data:`LOCATION_FILE`) with the home's
absolute path when it was last opened. Opening a store whose record names another place means the
home was moved or copied from there: before anything reads it, the old prefix is rewritten to the
new one, in every text cell of the store's SQLite databases (one transaction per database), in
the Feast registry's protobuf, and in the store's text files (each replaced through a rename),
and only then is the record updated. Without this a copy went on reading and writing the
original's artifacts, registry and tables, silently; a move broke them.

A rewrite is idempotent (a value already rewritten holds no old prefix), so a crash before the
record is updated is repaired by the next open. A store without a record (one made before this
existed) is given one, unless a path it holds shows that it was made elsewhere, which is then
rewritten as a move.
"""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

LOCATION_FILE = ".home-location"
SQLITE_HEADER = b"SQLite format 3\x00"
# Text files larger than this are not rewritten (a log that big is not read for paths).
MAX_TEXT_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Move:
    """A home found at ``new`` whose stores were written at ``old`` (both absolute paths)."""

    old: str
    new: str

    def pairs(self) -> list[tuple[str, str]]:
        """The forms a path takes in a store: as is, and percent-encoded as in a file URI."""
        pairs = [(self.old, self.new)]
        encoded = (quote(self.old), quote(self.new))
        return pairs + [encoded] if encoded != pairs[0] else pairs

    def rewrite(self, text: str) -> str:
        """``text`` with the old home replaced wherever it is a whole path or a path's start:
        ``/old/home`` and ``/old/home/x``, not ``/old/homely`` nor ``/mnt/old/home``."""
        for old, new in self.pairs():
            if old in text and not (old in new and new in text):
                text = _pattern(old).sub(new.replace("\\", "\\\\"), text)  # a template
        return text


def _pattern(path: str) -> re.Pattern[str]:
    # a path character on either side would make it part of another path
    return re.compile(rf"(?<![\w.-]){re.escape(path)}(?![\w.-])")


def recorded(store: Path) -> str | None:
    """Where the home was when ``store`` was last opened, or None for a store without a record."""
    try:
        return (store / LOCATION_FILE).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def record(store: Path, home: Path) -> None:
    """Record ``home`` as where ``store`` now is (written through a rename)."""
    write_atomic(store / LOCATION_FILE, f"{home}\n")


def relocate(
    store: Path,
    home: Path,
    rewrite: Callable[[Move], None],
    infer: Callable[[], str | None] = lambda: None,
) -> Move | None:
    """Run ``rewrite`` if ``store`` was last opened in another home, then record this one.

    ``infer`` gives the old home of a store without a record, from a path it holds, or None.
    Returns the move made, or None. A store folder that does not exist yet is left alone.
    """
    if not store.is_dir():
        return None
    home = Path(os.path.abspath(home))
    known = recorded(store)
    if known == str(home):
        return None
    old = known or infer()
    move = Move(old, str(home)) if old and old != str(home) else None
    if move is not None:
        rewrite(move)
    record(store, home)
    return move


def home_of(path: str, below: str) -> str | None:
    """The home that ``path`` (a path or file URI) lies in, given that it is ``<home>/<below>``
    there; None when it is not of that form."""
    path = path.removeprefix("file://")
    suffix = "/" + below.strip("/")
    return path.removesuffix(suffix) if path.endswith(suffix) and path.startswith("/") else None


# -- rewriting the stores ------------------------------------------------------------------------


def is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def rewrite_sqlite(database: Path, move: Move) -> int:
    """Rewrite the old home in every text cell of ``database``, in one transaction; the number
    of cells changed. Virtual tables and their shadow tables are left alone."""
    connection = sqlite3.connect(database, timeout=60, isolation_level=None)
    try:
        connection.create_function("playbook_rehome", 1, move.rewrite, deterministic=True)
        rows = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
        virtual = [name for name, sql in rows if (sql or "").upper().startswith("CREATE VIRTUAL")]
        tables = [
            name for name, _ in rows if not any(name.startswith(v) for v in virtual)
        ]  # an FTS table's shadow tables start with its name
        changed = 0
        connection.execute("BEGIN IMMEDIATE")
        try:
            for table in tables:
                columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
                for column in columns:
                    for old, _ in move.pairs():
                        cursor = connection.execute(
                            f'UPDATE "{table}" SET "{column}" = playbook_rehome("{column}")'
                            f' WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0',
                            (old,),
                        )
                        changed += max(cursor.rowcount, 0)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return changed
    finally:
        connection.close()


def rewrite_text(path: Path, move: Move) -> bool:
    """Rewrite the old home in a text file (through a rename); False when it held none."""
    if path.stat().st_size > MAX_TEXT_BYTES:
        return False
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return False
    rewritten = move.rewrite(text)
    if rewritten == text:
        return False
    write_atomic(path, rewritten)
    return True


def rewrite_feast_registry(path: Path, move: Move) -> bool:
    """Rewrite the old home in every string of a Feast file registry (the file sources' paths,
    the online store's infrastructure), the serialized views of its version history included;
    False when it held none."""
    from feast.protos.feast.core.Registry_pb2 import Registry

    registry = Registry()
    registry.ParseFromString(path.read_bytes())
    if not _rewrite_message(registry, move):
        return False
    write_atomic(path, registry.SerializeToString())
    return True


def _view_proto(kind: str):
    """The proto class of a serialized view in Feast's version history, by its recorded type."""
    from feast.protos.feast.core import (
        FeatureView_pb2,
        LabelView_pb2,
        OnDemandFeatureView_pb2,
        StreamFeatureView_pb2,
    )

    return {
        "feature_view": FeatureView_pb2.FeatureView,
        "stream_feature_view": StreamFeatureView_pb2.StreamFeatureView,
        "on_demand_feature_view": OnDemandFeatureView_pb2.OnDemandFeatureView,
        "label_view": LabelView_pb2.LabelView,
    }.get(kind)


def _rewrite_message(message, move: Move) -> bool:
    """Rewrite every string field of a protobuf message, nested ones included, in place."""
    changed = False
    for field, value in message.ListFields():
        if field.type == field.TYPE_STRING:
            if field.is_repeated:
                for i, item in enumerate(value):
                    if (new := move.rewrite(item)) != item:
                        value[i], changed = new, True
            elif (new := move.rewrite(value)) != value:
                setattr(message, field.name, new)
                changed = True
        elif field.type == field.TYPE_BYTES and field.name == "feature_view_proto":
            kind = _view_proto(getattr(message, "feature_view_type", ""))
            view = kind.FromString(value) if kind is not None else None
            if view is not None and _rewrite_message(view, move):
                setattr(message, field.name, view.SerializeToString())
                changed = True
        elif field.type == field.TYPE_MESSAGE:
            entry = field.message_type
            if entry.GetOptions().map_entry:
                changed |= _rewrite_map(value, entry.fields_by_name["value"], move)
            else:
                for item in value if field.is_repeated else [value]:
                    changed |= _rewrite_message(item, move)
    return changed


def _rewrite_map(mapping, value_field, move: Move) -> bool:
    changed = False
    for key in list(mapping):
        if value_field.type == value_field.TYPE_STRING:
            if (new := move.rewrite(mapping[key])) != mapping[key]:
                mapping[key], changed = new, True
        elif value_field.type == value_field.TYPE_MESSAGE:
            changed |= _rewrite_message(mapping[key], move)
    return changed


def rewrite_files(paths: Iterable[Path], move: Move) -> list[Path]:
    """Rewrite each file: SQLite databases cell by cell, others as text; the files changed."""
    changed = []
    for path in paths:
        if path.is_symlink() or not path.is_file():
            continue
        done = rewrite_sqlite(path, move) > 0 if is_sqlite(path) else rewrite_text(path, move)
        if done:
            changed.append(path)
    return changed


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write ``content`` beside ``path`` and rename it over ``path``, keeping ``path``'s mode."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "wb") as stream:
            stream.write(content.encode("utf-8") if isinstance(content, str) else content)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- the stores of a home ------------------------------------------------------------------------


def relocate_mlflow(folder: Path, home: Path) -> Move | None:
    """Re-root ``<home>/mlflow``: its database (``mlflow.db``) and the MLmodel files under it.

    A store without a record tells its old home by its Default experiment, which Playbook keeps
    at ``<home>/mlflow/artifacts/0``.
    """
    database = folder / "mlflow.db"

    def rewrite(move: Move) -> None:
        rewrite_files([database, *folder.rglob("MLmodel")], move)

    def infer() -> str | None:
        if not is_sqlite(database):
            return None
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            row = connection.execute(
                "SELECT artifact_location FROM experiments WHERE experiment_id = 0"
            ).fetchone()
        except sqlite3.Error:
            return None
        finally:
            connection.close()
        return home_of(row[0], "mlflow/artifacts/0") if row and row[0] else None

    return relocate(folder, home, rewrite, infer)


def relocate_feast_repo(repo: Path, home: Path) -> Move | None:
    """Re-root a Feast repo of ``home``: its registry (the file sources' paths), its
    ``feature_store.yaml`` and Python file as older versions wrote them (absolute paths).

    A repo without a record tells its old home by the registry path of such a yaml,
    ``<home>/feast/<project>/registry.db``.
    """
    registry = repo / "registry.db"

    def rewrite(move: Move) -> None:
        if registry.is_file():
            rewrite_feast_registry(registry, move)
        rewrite_files([repo / "feature_store.yaml", *repo.glob("*.py")], move)

    def infer() -> str | None:
        try:
            text = (repo / "feature_store.yaml").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        found = re.search(r"^registry:\s*(\S+)\s*$", text, re.MULTILINE)
        below = f"feast/{repo.name}/registry.db"
        return home_of(found.group(1).strip("'\""), below) if found else None

    return relocate(repo, home, rewrite, infer)


def relocate_dagster(folder: Path, home: Path) -> Move | None:
    """Re-root a Dagster instance folder of ``home`` (``<home>/dagster``): every SQLite database
    under it (run, event-log and schedule storage: the ``path`` of each materialization) and
    the runs' compute logs. Call it before the instance is opened."""

    def rewrite(move: Move) -> None:
        logs = folder / "storage"
        files = [p for p in folder.rglob("*") if p.suffix == ".db" or p.is_relative_to(logs)]
        rewrite_files(files, move)

    return relocate(folder, home, rewrite)


def relocate_home(home: Path) -> dict[str, Move]:
    """Re-root every store of a local home now (what each store otherwise does when first
    opened): its MLflow store, Feast repos and Dagster instance; the moves made, by folder."""
    home = Path(os.path.abspath(home))
    stores: list[tuple[Path, Callable[[Path, Path], Move | None]]] = [
        (home / "mlflow", relocate_mlflow),
        (home / "dagster", relocate_dagster),
        *((yaml.parent, relocate_feast_repo) for yaml in home.glob("feast/*/feature_store.yaml")),
    ]
    moves = {}
    for folder, relocate_store in stores:
        if (move := relocate_store(folder, home)) is not None:
            moves[str(folder.relative_to(home))] = move
    return moves


if __name__ == "__main__":  # python -m runtime.relocate HOME: before serving a read-only mount
    import sys

    where = Path(sys.argv[1] if len(sys.argv) > 1 else ".playbook")
    for name, made in relocate_home(where).items():
        sys.stdout.write(f"{name}: {made.old} -> {made.new}\n")
